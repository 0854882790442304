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
