package tokend_test

// The Makefile's promises to a newcomer: `make run` logs as text (JSON is
// for collectors), and the Redis hint says what the tests need.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make runs $(GO); a fake go shows the environment `make run` gives it.
func TestMakeRunLogsText(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	fake := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"LOG_FORMAT=$LOG_FORMAT args=$*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) string {
		cmd := exec.Command("make", "--no-print-directory", "run", "GO="+fake)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "LOG_FORMAT=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make run: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "LOG_FORMAT=text args=run ./cmd/tokend serve --dev") {
		t.Errorf("make run does not log as text:\n%s", out)
	}
	if out := run("LOG_FORMAT=json"); !strings.Contains(out, "LOG_FORMAT=json args=") {
		t.Errorf("LOG_FORMAT=json make run is not honoured:\n%s", out)
	}
}

// make test's first check names what is missing: the redis-server program
// (Redis >= 7), not only a reachable Redis.
func TestMakeRedisCheckWantsRedisServer(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	// A PATH with the shell tools the check uses and nothing else.
	bin := t.TempDir()
	for _, tool := range []string{"bash", "sed", "timeout", "cat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	check := func() (string, error) {
		cmd := exec.Command(makeBin, "--no-print-directory", "redis-check")
		cmd.Env = []string{"PATH=" + bin, "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(); err == nil || !strings.Contains(out, "redis-server program is not on PATH") || !strings.Contains(out, "apt-get install -y redis-server") {
		t.Errorf("without redis-server: %v\n%s", err, out)
	}
	old := "#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1'\n"
	if err := os.WriteFile(filepath.Join(bin, "redis-server"), []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("sh"); err == nil {
		p, _ := exec.LookPath("sh")
		_ = os.Symlink(p, filepath.Join(bin, "sh"))
	}
	if out, err := check(); err == nil || !strings.Contains(out, "version 6") || !strings.Contains(out, "Redis >= 7") {
		t.Errorf("with redis-server 6: %v\n%s", err, out)
	}
}
