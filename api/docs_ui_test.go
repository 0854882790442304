package api_test

// TestSwaggerUIRenders loads GET /docs of a real server in headless
// Chromium, checks that Swagger UI rendered every documented operation from
// the built-in assets (no network beyond tokend), and saves a screenshot.
//
//	TOKEND_TEST_ARTIFACTS  directory for docs.png and docs.html [a temporary
//	                       directory, removed after the test]
//	TOKEND_CHROMIUM        the browser to use [chromium, chromium-browser,
//	                       google-chrome from PATH]
//
// Without a browser the test skips, except under CI=true, where it fails:
// .ci/run installs Debian's chromium package.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOKEND_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "no Chromium found (chromium, chromium-browser or google-chrome on PATH, or TOKEND_CHROMIUM); " +
		"on Debian or Ubuntu: sudo apt-get install -y chromium (.ci/run does this)"
	if os.Getenv("CI") == "true" {
		t.Fatal(how + "; CI=true, so this is a failure, not a skip")
	}
	t.Skip(how + "; skipping " + t.Name())
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TOKEND_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium runs a headless browser on url with extra flags, in a profile
// directory of its own, and returns stdout and stderr.
func chromium(t *testing.T, bin, url string, flags ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
		"--enable-logging=stderr", "--log-level=0", // console messages, CSP violations included
		// Let the page's scripts run to completion (virtual time skips idle waits).
		"--virtual-time-budget=20000",
	}, flags...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir() // chromium may write crash dumps into the working directory
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, tail(errb.Bytes()))
	}
	return out.Bytes(), errb.Bytes()
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

var renderedPath = regexp.MustCompile(`class="opblock-summary-path" data-path="([^"]+)"`)

func TestSwaggerUIRenders(t *testing.T) {
	bin := findChromium(t)
	doc := loadDoc(t)
	e := newEnv(t, sharedRedisStore(t))
	url := e.srv.URL + "/docs"

	// 1. The rendered DOM lists every documented operation.
	dom, logs := chromium(t, bin, url, "--dump-dom")
	var rendered []string
	for _, m := range renderedPath.FindAllSubmatch(dom, -1) {
		rendered = append(rendered, string(m[1]))
	}
	for path := range doc.Paths.Map() {
		if !slices.Contains(rendered, path) {
			t.Errorf("Swagger UI did not render %s (rendered: %v)", path, rendered)
		}
	}
	for _, want := range []string{"tokend", "bearerAuth", "clientSecretBasic"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("the rendered page does not mention %q", want)
		}
	}
	if bytes.Contains(dom, []byte("Failed to load API definition")) || bytes.Contains(dom, []byte("errors-wrapper")) {
		t.Errorf("Swagger UI reports errors loading /openapi.yaml")
	}
	// Nothing was refused by the page's Content-Security-Policy, and no
	// script failed.
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, "CONSOLE") && (strings.Contains(line, "Refused") ||
			strings.Contains(line, "Content Security Policy") || strings.Contains(line, "Error") ||
			strings.Contains(line, "Uncaught")) {
			t.Errorf("browser console: %s", line)
		}
	}

	// 2. A screenshot for people (and CI artifacts).
	dir := artifactsDir(t)
	png := filepath.Join(dir, "docs.png")
	_ = os.Remove(png)
	chromium(t, bin, url, "--window-size=1280,2200", "--screenshot="+png)
	info, err := os.Stat(png)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	head := make([]byte, 8)
	if f, err := os.Open(png); err == nil {
		_, _ = f.Read(head)
		f.Close()
	}
	if !bytes.Equal(head, []byte("\x89PNG\r\n\x1a\n")) || info.Size() < 20<<10 {
		t.Errorf("screenshot %s is not a plausible PNG (%d bytes)", png, info.Size())
	}
	if err := os.WriteFile(filepath.Join(dir, "docs.html"), dom, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes); rendered DOM: %s", png, info.Size(), filepath.Join(dir, "docs.html"))
}
