package tokend_test

// The commands in the documentation are run, not just read:
//
//   - TestREADMEWalkthrough runs the ```sh blocks of README.md's walkthrough
//     with bash, in order, in one shell, in a fresh copy of the repository
//     (so `make build` builds a fresh bin/tokend), against the test Redis
//     under a key prefix of its own, and checks the answers the README
//     states after each block (inline `{...}` JSON and bare status codes);
//   - TestIntegrationCurlReference does the same for every ```sh block of
//     docs/integration.md, each checked against the ```text block that
//     follows it;
//   - TestEveryCurlLineRuns fails when README.md or docs/*.md has a curl
//     command outside the blocks those two tests run;
//   - TestIntegrationGoExampleCompiles builds the Go example of
//     docs/integration.md against this repository's verify module, as a
//     sibling service on an older Go would.
//
// Only the hosts and ports, the Redis URL and the scratch directory are
// changed: "localhost:8080" becomes the 127.0.0.1 port tokend listens on
// here (and "localhost:9090", the example service, another free port), the walkthrough's Redis URL the test Redis, and "/tmp/" a
// temporary directory of the test's own (so a test run never clobbers the
// files of a reader's own walkthrough in /tmp). In an expected answer, "…"
// stands for anything.
//
// The README walkthrough runs twice against the same Redis keys: a reader
// who runs it again must not trip over what the first run left behind.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testredis"
)

// block is a fenced code block of a Markdown file.
type block struct {
	lang       string
	code       string
	start, end int // 1-based lines of the opening and closing fences
}

var fenceOpen = regexp.MustCompile("^( *)```([a-z]*)\\s*$")

// fences returns the fenced code blocks of md, with the fences'
// indentation (list items) removed from their lines.
func fences(t *testing.T, name, md string) []block {
	t.Helper()
	lines := strings.Split(md, "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := fenceOpen.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent := m[1]
		b := block{lang: m[2], start: i + 1}
		var code []string
		for i++; ; i++ {
			if i >= len(lines) {
				t.Fatalf("%s:%d: unclosed code block", name, b.start)
			}
			if strings.TrimSpace(lines[i]) == "```" {
				break
			}
			code = append(code, strings.TrimPrefix(lines[i], indent))
		}
		b.end = i + 1
		b.code = strings.Join(code, "\n") + "\n"
		out = append(out, b)
	}
	return out
}

// step is a block to run and the answers expected in its output, in order.
type step struct {
	block
	expect []string
}

// globMatch reports whether out contains the fragments of want (split at
// "…") in order.
func globMatch(out, want string) bool {
	for _, frag := range strings.Split(want, "…") {
		i := strings.Index(out, frag)
		if i < 0 {
			return false
		}
		out = out[i+len(frag):]
	}
	return true
}

var (
	inlineCode = regexp.MustCompile("`([^`\n]+)`")
	statusCode = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
)

// readmeSteps returns the ```sh blocks of the README's "## Walkthrough"
// section, each expecting the inline JSON (`{...}`) and status codes
// (`204`) written between it and the next block.
func readmeSteps(t *testing.T) []step {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(data)
	lines := strings.Split(md, "\n")
	first, last := 0, len(lines)
	for i, l := range lines {
		if l == "## Walkthrough" {
			first = i + 1
		} else if first > 0 && strings.HasPrefix(l, "## ") {
			last = i + 1
			break
		}
	}
	if first == 0 {
		t.Fatal(`README.md has no "## Walkthrough" section`)
	}
	var steps []step
	for _, b := range fences(t, "README.md", md) {
		if b.start > first && b.end < last && b.lang == "sh" {
			steps = append(steps, step{block: b})
		}
	}
	for i := range steps {
		to := last
		if i+1 < len(steps) {
			to = steps[i+1].start
		}
		prose := strings.Join(lines[steps[i].end:to-1], "\n")
		for _, m := range inlineCode.FindAllStringSubmatch(prose, -1) {
			if strings.HasPrefix(m[1], "{") || statusCode.MatchString(m[1]) {
				steps[i].expect = append(steps[i].expect, m[1])
			}
		}
	}
	return steps
}

// integrationSteps returns the ```sh blocks of docs/integration.md, each
// expecting the ```text block right after it.
func integrationSteps(t *testing.T) []step {
	t.Helper()
	data, err := os.ReadFile("docs/integration.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	bs := fences(t, "docs/integration.md", string(data))
	var steps []step
	for i, b := range bs {
		if b.lang != "sh" {
			continue
		}
		s := step{block: b}
		if i+1 < len(bs) && bs[i+1].lang == "text" &&
			strings.TrimSpace(strings.Join(lines[b.end:bs[i+1].start-1], "")) == "" {
			s.expect = []string{bs[i+1].code}
		}
		steps = append(steps, s)
	}
	return steps
}

// copyRepo copies the repository (without .git, bin/ and test output)
// into a temporary directory, so that `make build` there builds a fresh
// binary without touching the working tree.
func copyRepo(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch path {
		case ".git", "bin", "test-artifacts":
			// In a git worktree .git is a file: SkipDir on a file would
			// skip the rest of the repository.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// freePort returns a free 127.0.0.1 port below the kernel's ephemeral
// range. The documents start and stop servers on it, and a port from the
// ephemeral range could meanwhile be handed to any outgoing connection on
// the machine (other tests open many), making the next server's bind fail.
func freePort(t *testing.T) string {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const min = 10000
	if lo <= min+1000 {
		lo = 65536 // an unusual range: take any port above min
	}
	for range 200 {
		port := strconv.Itoa(min + mathrand.IntN(lo-min))
		if port == "9090" { // the README's example service
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port found below the ephemeral range")
	return ""
}

// runStepsWith runs the steps in one bash, in a fresh copy of the
// repository, under the Redis key prefix prefix, and checks each step's
// exit status and expected answers.
func runStepsWith(t *testing.T, name string, steps []step, prefix string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash is needed to run the documentation: %v", err)
	}
	for _, tool := range []string{"curl", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the documentation (apt-get install -y %s): %v", tool, tool, err)
		}
	}
	redisURL := testredis.URL(t)
	dir := copyRepo(t)
	scratch := t.TempDir() // the documents' /tmp
	port := freePort(t)
	addr := "127.0.0.1:" + port
	exampleAddr := "127.0.0.1:" + freePort(t) // the README's example service, :9090 in the text

	// A clean environment for tokend: none of the developer's settings.
	var env []string
	vars := map[string]bool{}
	for _, v := range config.Variables() {
		vars[v.Name] = true
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !vars[k] && k != "TMPDIR" {
			env = append(env, kv)
		}
	}
	env = append(env, "HTTP_ADDR="+addr, "REDIS_KEY_PREFIX="+prefix, "TMPDIR="+t.TempDir())

	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	for i, s := range steps {
		code := strings.ReplaceAll(s.code, "localhost:8080", addr)
		code = strings.ReplaceAll(code, "redis://127.0.0.1:6379/0", redisURL)
		code = strings.ReplaceAll(code, "/tmp/", scratch+"/")
		code = strings.ReplaceAll(code, "localhost:9090", exampleAddr)
		code = strings.ReplaceAll(code, "go run ./examples/orders ", "go run ./examples/orders -addr "+exampleAddr+" ")
		fmt.Fprintf(&script, "echo '@@begin %d'\n%s\necho \"@@end %d $?\"\n", i, code, i)
	}
	// Whatever happens, stop the servers the blocks started.
	script.WriteString("kill $(jobs -p) 2>/dev/null; wait\n")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	outb, err := cmd.CombinedOutput()
	// Background servers are in bash's process group; make sure none survives.
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	out := strings.ReplaceAll(string(outb), "\r\n", "\n")
	if err != nil {
		t.Errorf("%s: bash: %v", name, err)
	}

	checked := 0
	for i, s := range steps {
		begin := fmt.Sprintf("@@begin %d\n", i)
		bi := strings.Index(out, begin)
		ei := strings.Index(out, fmt.Sprintf("@@end %d ", i))
		if bi < 0 || ei < bi {
			t.Errorf("%s:%d: the block did not run to its end; output:\n%s", name, s.start, tailStr(out))
			continue
		}
		got := out[bi+len(begin) : ei]
		status := strings.TrimSpace(strings.SplitN(out[ei+len(fmt.Sprintf("@@end %d ", i)):], "\n", 2)[0])
		if status != "0" {
			t.Errorf("%s:%d: the block exited with status %s:\n%s\noutput:\n%s", name, s.start, status, s.code, got)
		}
		for _, want := range s.expect {
			want = strings.ReplaceAll(want, "localhost:8080", addr) // the issuer follows HTTP_ADDR
			checked++
			if !globMatch(got, want) {
				t.Errorf("%s:%d: the block's output does not show what the document says.\nblock:\n%s\nwant (… = anything):\n%s\ngot:\n%s",
					name, s.start, s.code, want, got)
			}
		}
	}
	t.Logf("%s: ran %d blocks, checked %d stated answers", name, len(steps), checked)
	if t.Failed() {
		if log, err := os.ReadFile(filepath.Join(scratch, "tokend.log")); err == nil {
			t.Logf("tail of the document's /tmp/tokend.log:\n%s", tailStr(string(log)))
		}
	}
}

func tailStr(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

func TestREADMEWalkthrough(t *testing.T) {
	steps := readmeSteps(t)
	n := 0
	for _, s := range steps {
		n += len(s.expect)
	}
	// The walkthrough states at least: ready, reuse refused, revoked
	// (twice), 204, and the JSON sign-in.
	if len(steps) < 7 || n < 6 {
		t.Fatalf("README walkthrough: %d sh blocks with %d stated answers; the parser lost track", len(steps), n)
	}
	prefix := testredis.Prefix(t)
	runStepsWith(t, "README.md", steps, prefix)
	if !t.Failed() {
		// Again, over what the first run left in Redis.
		runStepsWith(t, "README.md (second run)", steps, prefix)
	}
}

func TestIntegrationCurlReference(t *testing.T) {
	steps := integrationSteps(t)
	n := 0
	for _, s := range steps {
		n += len(s.expect)
	}
	if len(steps) < 15 || n < 15 {
		t.Fatalf("docs/integration.md: %d sh blocks with %d expected answers; the parser lost track", len(steps), n)
	}
	prefix := testredis.Prefix(t)
	runStepsWith(t, "docs/integration.md", steps, prefix)
	if !t.Failed() {
		runStepsWith(t, "docs/integration.md (second run)", steps, prefix)
	}
}

// A curl command: "curl" followed by an option or a URL.
var curlCommand = regexp.MustCompile(`(^|[\s|;(` + "`" + `$])curl\s+(-|localhost|127\.|https?://)`)

// TestEveryCurlLineRuns: every curl command in README.md and docs/ is in a
// block that TestREADMEWalkthrough or TestIntegrationCurlReference runs.
func TestEveryCurlLineRuns(t *testing.T) {
	ran := map[string][][2]int{}
	for _, s := range readmeSteps(t) {
		ran["README.md"] = append(ran["README.md"], [2]int{s.start, s.end})
	}
	for _, s := range integrationSteps(t) {
		ran["docs/integration.md"] = append(ran["docs/integration.md"], [2]int{s.start, s.end})
	}
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md", "api/swaggerui/README.md")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if !curlCommand.MatchString(line) {
				continue
			}
			covered := false
			for _, r := range ran[f] {
				if i+1 > r[0] && i+1 < r[1] {
					covered = true
				}
			}
			if !covered {
				t.Errorf("%s:%d: a curl command that no test runs (put it in the README walkthrough or docs/integration.md's curl reference): %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestIntegrationGoExampleCompiles builds the ```go example of
// docs/integration.md as a program of its own module that uses this
// repository's verify module only — what a sibling service does — on the
// go line 1.22 (which its "GET /orders" patterns need), offline: the
// module cache and verify's go.sum only.
func TestIntegrationGoExampleCompiles(t *testing.T) {
	data, err := os.ReadFile("docs/integration.md")
	if err != nil {
		t.Fatal(err)
	}
	var code string
	for _, b := range fences(t, "docs/integration.md", string(data)) {
		if b.lang == "go" {
			code = b.code
		}
	}
	if code == "" {
		t.Fatal("docs/integration.md has no ```go example")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("verify/go.sum")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mod := fmt.Sprintf("module docexample\n\ngo 1.22\n\nrequire github.com/tokend/tokend/verify v0.0.0\n\nreplace github.com/tokend/tokend/verify => %s\n",
		filepath.Join(root, "verify"))
	for name, content := range map[string][]byte{"go.mod": []byte(mod), "go.sum": sum, "main.go": []byte(code)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Go example of docs/integration.md does not build: %v\n%s", err, bytes.TrimSpace(out))
	}
}

// TestDocsNameRealTests: every test docs/*.md cites as evidence exists, so
// a renamed or deleted test cannot leave a claim without its proof.
// "TestConformance/Name" refers to a case of the store conformance suite.
func TestDocsNameRealTests(t *testing.T) {
	funcs := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == ".git" || path == "bin" || path == "test-artifacts") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]*)\(`)
		if strings.HasSuffix(path, "_test.go") {
			for _, m := range decl.FindAllStringSubmatch(string(data), -1) {
				funcs[m[1]] = true
			}
		}
		if filepath.Dir(path) == filepath.Join("store", "storetest") {
			for _, m := range regexp.MustCompile(`\{"([A-Za-z]+)", test[A-Za-z]+\}`).FindAllStringSubmatch(string(data), -1) {
				funcs["TestConformance/"+m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("docs/*.md")
	cited := regexp.MustCompile("`((?:Test|Fuzz)[A-Z][A-Za-z0-9_]*(?:/[A-Za-z]+)?)`")
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cited.FindAllStringSubmatch(string(data), -1) {
			n++
			if !funcs[m[1]] {
				t.Errorf("%s cites %s, which is not a test of this repository", f, m[1])
			}
		}
	}
	if n < 30 {
		t.Errorf("docs cite only %d tests; the pattern lost track", n)
	}
}
