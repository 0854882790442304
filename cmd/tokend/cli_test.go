package main

// The CLI's rules: one username and password rule shared with
// signup, a password prompt without echo at a terminal, a non-zero exit
// for a mistyped subcommand, and keys generate following the
// configuration.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testkit"
)

// The CLI refuses what signup refuses, and canonicalises names the same
// way: look-alikes of a name are that name or refused, never a second
// account.
func TestCLIUsernameAndPasswordRules(t *testing.T) {
	env := redisEnv(t)
	if _, err := run(t, env, "long-enough-password", "users", "create", "ＡＬＩＣＥ"); err != nil {
		t.Fatal(err)
	}
	for _, lookalike := range []string{"alice", "Alice", "ALICE"} {
		if _, err := run(t, env, "long-enough-password", "users", "create", lookalike); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("users create %q beside ＡＬＩＣＥ: %v", lookalike, err)
		}
	}
	for _, bad := range []string{"al\u200bice", "b\u043eb", "a\x01b", "a b", "♥"} {
		if _, err := run(t, env, "long-enough-password", "users", "create", bad); err == nil || strings.Contains(err.Error(), "already exists") {
			t.Errorf("users create %q: %v, want a username error", bad, err)
		}
	}
	// "İx" no longer squats "ix": both can exist, and each signs in as itself.
	if _, err := run(t, env, "long-enough-password", "users", "create", "İx"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "long-enough-password", "users", "create", "ix"); err != nil {
		t.Fatalf("ix after İx: %v", err)
	}
	// The password policy is signup's: 8 characters are not enough any more.
	if _, err := run(t, env, "8charsxx", "users", "create", "carol"); err == nil || !strings.Contains(err.Error(), fmt.Sprint(credential.MinPasswordChars)) {
		t.Errorf("8-character password: %v", err)
	}
	if _, err := run(t, env, "CarolCarol", "users", "create", "carolcarol"); err == nil || !strings.Contains(err.Error(), "same as the username") {
		t.Errorf("password = username: %v", err)
	}
	// The user commands find a user by any spelling of the name.
	if out, err := run(t, env, "", "users", "disable", "Alice"); err != nil || !strings.Contains(out, "disabled user alice") {
		t.Errorf("disable Alice: %v %s", err, out)
	}
	// Client ids: characters every client library sends unchanged in HTTP Basic.
	for _, bad := range []string{"a+b", "a%20b", "a:b", "a b", "ü", strings.Repeat("x", 65)} {
		if _, err := run(t, env, "", "clients", "create", bad, "--public"); err == nil || !strings.Contains(err.Error(), "client id") {
			t.Errorf("clients create %q: %v", bad, err)
		}
	}
	if _, err := run(t, env, "", "clients", "create", "my-app_1.0~x", "--public"); err != nil {
		t.Errorf("a valid client id refused: %v", err)
	}
}

// A mistyped subcommand fails; a password on the command line gets told
// where passwords come from.
func TestCLIMistakes(t *testing.T) {
	for _, args := range [][]string{{"users", "frobnicate"}, {"clients", "lst"}, {"keys", "genrate"}, {"frobnicate"}} {
		if out, err := run(t, nil, "", args...); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("tokend %s: %v %s, want an unknown command error", strings.Join(args, " "), err, out)
		}
	}
	if out, err := run(t, nil, "", "users"); err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("tokend users: %v %s, want its help", err, out)
	}
	_, err := run(t, redisEnv(t), "", "users", "create", "bob", "secret-password")
	if err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Errorf("users create bob secret-password: %v", err)
	}
}

// keys generate honours JWT_KEYS_DIR and JWT_SIGNING_ALG, and takes
// --alg in any case.
func TestKeysGenerateFollowsConfiguration(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, []string{"JWT_KEYS_DIR=" + dir, "JWT_SIGNING_ALG=EdDSA"}, "", "keys", "generate")
	if err != nil || !strings.Contains(out, "generated EdDSA key") || !strings.Contains(out, dir) {
		t.Fatalf("keys generate with JWT_KEYS_DIR and JWT_SIGNING_ALG: %v %s", err, out)
	}
	other := t.TempDir()
	out, err = run(t, []string{"JWT_KEYS_DIR=" + dir}, "", "keys", "generate", "--dir", other, "--alg", "rs256")
	if err != nil || !strings.Contains(out, "generated RS256 key") || !strings.Contains(out, other) {
		t.Fatalf("keys generate --alg rs256: %v %s", err, out)
	}
	if _, err := run(t, nil, "", "keys", "generate", "--dir", other, "--alg", "hs256"); err == nil || !strings.Contains(err.Error(), "--alg") {
		t.Fatalf("--alg hs256: %v", err)
	}
	if _, err := run(t, nil, "", "keys", "generate"); err == nil || !strings.Contains(err.Error(), "JWT_KEYS_DIR") {
		t.Fatalf("no directory: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) == 0 {
		t.Fatal("nothing written to JWT_KEYS_DIR")
	}
}

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// At a terminal, users create prompts on stderr, does not echo, and asks
// twice; a mismatch creates nothing.
func TestUsersCreatePromptsAtATerminal(t *testing.T) {
	env := redisEnv(t)
	create := func(name string, typed ...string) (stderr string, echoed []byte, err error) {
		master, slave := openPTY(t)
		// Whatever the terminal shows (echo) is read from the master side
		// until the slave side is closed (then reads fail with EIO).
		var shown bytes.Buffer
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			buf := make([]byte, 4096)
			for {
				n, err := master.Read(buf)
				shown.Write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
		errb := &testkit.SyncBuffer{}
		root := newRoot(slave, &bytes.Buffer{}, errb, env)
		root.SetArgs([]string{"users", "create", name})
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(context.Background()) }()
		prompts := []string{"Password for " + name + ": ", "Repeat the password: "}
		for i, line := range typed {
			// Type each line only once its prompt is shown (echo is off by then).
			for wait := 0; !strings.Contains(errb.String(), prompts[i]); wait++ {
				if wait == 3000 {
					t.Fatalf("no prompt %q on stderr: %q", prompts[i], errb.String())
				}
				select {
				case err := <-done:
					slave.Close()
					<-readDone
					return errb.String(), shown.Bytes(), err
				case <-time.After(10 * time.Millisecond):
				}
			}
			if _, err := master.WriteString(line + "\n"); err != nil {
				t.Fatal(err)
			}
		}
		err = <-done
		slave.Close()
		<-readDone
		return errb.String(), shown.Bytes(), err
	}
	stderr, echoed, err := create("dave", "typed-at-a-terminal", "typed-at-a-terminal")
	if err != nil {
		t.Fatalf("users create at a terminal: %v\n%s", err, stderr)
	}
	if bytes.Contains(echoed, []byte("typed-at-a-terminal")) || strings.Contains(stderr, "typed-at-a-terminal") {
		t.Errorf("the password was echoed: terminal %q, stderr %q", echoed, stderr)
	}
	if _, err := run(t, env, "another-long-password", "users", "create", "dave"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("dave was not created: %v", err)
	}
	if _, _, err := create("erin", "first-long-password", "second-long-password"); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Errorf("mismatched passwords: %v", err)
	}
	if _, err := run(t, env, "another-long-password", "users", "create", "erin"); err != nil {
		t.Errorf("erin was created despite the mismatch: %v", err)
	}
}

// Durations in the logs are for people: milliseconds with the unit in the
// key in JSON, a rounded duration with its unit in text; never slog's raw
// nanoseconds.
func TestLogDurationsReadable(t *testing.T) {
	var j, x bytes.Buffer
	newLogger(&j, slog.LevelInfo, "json").Info("request", slog.Duration("duration", 16003931*time.Nanosecond))
	newLogger(&x, slog.LevelInfo, "text").Info("request", slog.Duration("duration", 16003931*time.Nanosecond))
	if !strings.Contains(j.String(), `"duration_ms":16.004`) || strings.Contains(j.String(), "16003931") {
		t.Errorf("JSON: %s", j.String())
	}
	if !strings.Contains(x.String(), "duration=16.004ms") {
		t.Errorf("text: %s", x.String())
	}
	// The access log of a real server goes through it.
	base, out := serveFor(t, []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "--dev")
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for i := 0; !strings.Contains(out.String(), `"path":"/healthz"`); i++ {
		if i == 1000 {
			t.Fatalf("no access log line:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !regexp.MustCompile(`"path":"/healthz"[^\n]*"duration_ms":[0-9.]+`).MatchString(out.String()) {
		t.Errorf("access log:\n%s", out.String())
	}
}

// A command given the wrong arguments says so with its usage:
// `tokend users create` without a name shows how to call it.
func TestUsageOnArgumentErrors(t *testing.T) {
	for _, args := range [][]string{{"users", "create"}, {"users", "unlock"}, {"clients", "rotate-secret"}, {"version", "extra"}} {
		out, err := run(t, nil, "", args...)
		if err == nil || !strings.Contains(err.Error(), "Usage:\n  tokend "+args[0]+" ") {
			t.Errorf("tokend %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := run(t, nil, "", "users", "create"); err == nil || !strings.Contains(err.Error(), "tokend users create USERNAME") {
		t.Errorf("users create without a name: %v", err)
	}
}

// `tokend serve --help` points to the environment variables: every one,
// with its default, and where to read more.
func TestServeHelpNamesTheVariables(t *testing.T) {
	out, err := run(t, nil, "", "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"environment variables", "tokend config", "docs/configuration.md", "HTTP_ADDR", ":8080", "REDIS_URL", "(unset)"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q:\n%s", want, out)
		}
	}
	for _, v := range config.Variables() {
		if !strings.Contains(out, v.Name) {
			t.Errorf("serve --help lacks %s", v.Name)
		}
	}
}
