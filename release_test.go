package tokend_test

// The release artefacts (README.md, "Running a released binary";
// docs/operations.md, "Releases"): `make dist` builds what it says, the
// Dockerfile builds the very same binary, and the README's commands for a
// downloaded release work on what `make dist` makes.

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const distVersion = "v0.0.0-releasetest"

// distHost runs `make dist` for this machine's platform alone into a
// temporary directory (the four platforms take minutes of cold cross
// compiling; TestDistPlatforms checks that the default names all four) and
// returns the directory and the binary's name.
func distHost(t *testing.T) (dir, name string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed: %v", err)
	}
	dir = t.TempDir()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	cmd := exec.Command("make", "--no-print-directory", "dist", "DIST="+dir, "DIST_PLATFORMS="+platform, "VERSION="+distVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	return dir, fmt.Sprintf("tokend-%s-%s-%s", distVersion, runtime.GOOS, runtime.GOARCH)
}

// TestDist: `make dist` writes the binary and SHA256SUMS, nothing else;
// the sum is the binary's; the binary is static (no cgo; on Linux no
// dynamic loader), built with -trimpath for its platform, and prints the
// version stamped in.
func TestDist(t *testing.T) {
	dir, name := distHost(t)
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"SHA256SUMS", name}; !slices.Equal(names, want) {
		t.Fatalf("dist/ holds %v, want %v", names, want)
	}
	bin := filepath.Join(dir, name)
	data, err := os.ReadFile(bin)
	must(t, err)
	sum := sha256.Sum256(data)
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	must(t, err)
	if want := hex.EncodeToString(sum[:]) + "  " + name + "\n"; string(sums) != want {
		t.Errorf("SHA256SUMS = %q, want %q", sums, want)
	}

	info, err := buildinfo.ReadFile(bin)
	must(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": runtime.GOOS, "GOARCH": runtime.GOARCH} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q (all: %v)", k, settings[k], want, settings)
		}
	}
	if _, ok := settings["vcs.revision"]; ok {
		t.Errorf("the binary carries a VCS stamp, so a build from a checkout and one from the Docker context differ: %v", settings)
	}
	if runtime.GOOS == "linux" {
		f, err := elf.Open(bin)
		must(t, err)
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the linux binary asks for a dynamic loader (PT_INTERP): not static")
			}
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || string(out) != "tokend "+distVersion+"\n" {
		t.Errorf("%s version: %v %q", name, err, out)
	}
}

// TestDistPlatforms: a plain `make dist` builds linux and darwin on amd64
// and arm64, each through `make build`, into names that say so. (make -n
// runs the recursive makes with -n too, so nothing is built.)
func TestDistPlatforms(t *testing.T) {
	out, err := exec.Command("make", "--no-print-directory", "-n", "dist", "VERSION="+distVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("make -n dist: %v\n%s", err, out)
	}
	for _, p := range []string{"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"} {
		want := regexp.MustCompile(`(?m)^CGO_ENABLED=0 go build .* -o dist/tokend-` + distVersion + "-" + p + ` \./cmd/tokend$`)
		if !want.Match(out) {
			t.Errorf("make dist does not build %s with make build's command:\n%s", p, out)
		}
	}
}

// dockerBuildCommand returns the shell command of the Dockerfile's RUN
// instruction that builds tokend (continuation lines joined, comment lines
// dropped, RUN's own --mount options removed), as docker runs it.
func dockerBuildCommand(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	must(t, err)
	var instrs []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if rest, cont := strings.CutSuffix(trimmed, `\`); cont {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			instrs = append(instrs, s)
		}
		cur.Reset()
	}
	var builds []string
	for _, in := range instrs {
		if strings.Contains(in, "go build") {
			t.Errorf("the Dockerfile runs go build itself, with flags of its own: %s", in)
		}
		if cmd, ok := strings.CutPrefix(in, "RUN "); ok && strings.Contains(cmd, "make build") {
			for _, f := range strings.Fields(cmd) {
				if !strings.HasPrefix(f, "--mount=") {
					break
				}
				cmd = strings.TrimSpace(strings.TrimPrefix(cmd, f))
			}
			builds = append(builds, cmd)
		}
	}
	if len(builds) != 1 {
		t.Fatalf("the Dockerfile has %d RUN instructions with make build, want 1: %q", len(builds), builds)
	}
	return builds[0]
}

// TestDockerfileBuildsTheReleaseBinary runs the Dockerfile's build command
// as docker would (its ARGs in the environment, for this machine's
// platform) with /out in a temporary directory: the binary is
// byte-for-byte the one `make dist` makes for the same version and
// platform.
func TestDockerfileBuildsTheReleaseBinary(t *testing.T) {
	cmdline := dockerBuildCommand(t)
	if !strings.Contains(cmdline, "/out/tokend") {
		t.Fatalf("the Dockerfile's build does not write /out/tokend (what the final stage copies): %s", cmdline)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "-euc", strings.ReplaceAll(cmdline, "/out/", out+"/"))
	cmd.Env = append(os.Environ(), "VERSION="+distVersion, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command: %v\n%s", err, b)
	}
	image, err := os.ReadFile(filepath.Join(out, "tokend"))
	must(t, err)
	dir, name := distHost(t)
	release, err := os.ReadFile(filepath.Join(dir, name))
	must(t, err)
	if !bytes.Equal(image, release) {
		t.Errorf("the Dockerfile's binary (%d bytes) differs from make dist's %s (%d bytes)", len(image), name, len(release))
	}
}

// TestREADMEReleaseSteps runs the README's commands for a downloaded
// release in a directory holding what a person downloads: the binary
// `make dist` made for this machine and SHA256SUMS. The check passes, the
// binary runs and prints its version; a binary changed after its sum was
// taken fails the check.
func TestREADMEReleaseSteps(t *testing.T) {
	data, err := os.ReadFile("README.md")
	must(t, err)
	md := string(data)
	start := strings.Index(md, "\n## Running a released binary\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Running a released binary" section`)
	}
	section := md[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var script string
	for _, b := range fences(t, "README.md", section) {
		if b.lang == "sh" {
			script += b.code
		}
	}
	platform := regexp.MustCompile(`(?m)^V=\S+ OS=\S+ ARCH=\S+`)
	if !platform.MatchString(script) {
		t.Fatalf("the release steps do not start with V=... OS=... ARCH=...:\n%s", script)
	}
	script = platform.ReplaceAllString(script, fmt.Sprintf("V=%s OS=%s ARCH=%s", distVersion, runtime.GOOS, runtime.GOARCH))

	dir, name := distHost(t)
	runIn := func() (string, error) {
		cmd := exec.Command("bash", "-euc", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runIn()
	if err != nil || !strings.Contains(out, name+": OK") || !strings.Contains(out, "tokend "+distVersion+"\n") {
		t.Fatalf("the README's release steps: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.Write([]byte{0})
	must(t, errors.Join(err, f.Close()))
	if out, err := runIn(); err == nil || !strings.Contains(out, "FAILED") {
		t.Errorf("a changed binary passed the README's check: %v\n%s", err, out)
	}
}
