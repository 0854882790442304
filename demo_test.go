package tokend_test

// `make demo` (scripts/demo.sh), run as a person runs it, in a fresh copy
// of the repository, on free ports: the story's steps each answer what
// the story says, and whether it ends by itself (DEMO_ONCE=1) or by
// Ctrl-C, nothing it started outlives it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testkit"
)

// demoCmd is `make demo` in a copy of the repository, in a process group
// of its own (as a terminal's foreground job), with none of tokend's
// settings in its environment, on free ports.
func demoCmd(t *testing.T, ctx context.Context, extra ...string) (cmd *exec.Cmd, tokendAddr, ordersAddr string) {
	t.Helper()
	for _, tool := range []string{"bash", "make", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	tokendAddr, ordersAddr = "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	vars := map[string]bool{}
	for _, v := range config.Variables() {
		vars[v.Name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !vars[k] && !strings.HasPrefix(k, "DEMO_") && k != "TMPDIR" {
			env = append(env, kv)
		}
	}
	env = append(env, "TMPDIR="+t.TempDir(), "REDIS_URL=redis://127.0.0.1:1/0") // the demo must not take REDIS_URL from its caller
	cmd = exec.CommandContext(ctx, "make", append([]string{"--no-print-directory", "demo",
		"DEMO_TOKEND_ADDR=" + tokendAddr, "DEMO_ORDERS_ADDR=" + ordersAddr}, extra...)...)
	cmd.Dir = copyRepo(t)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd, tokendAddr, ordersAddr
}

// checkNothingLeft fails if a process of the demo's group is alive or
// something still listens on its ports.
func checkNothingLeft(t *testing.T, pgid int, addrs ...string) {
	t.Helper()
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("a process of the demo is still running (kill -0 -%d: %v)", pgid, err)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on %s after the demo", a)
		}
	}
}

// The story, once: every step answers as the story says (the script
// checks each answer and exits non-zero otherwise; this checks the
// printed answers too), the lines printed are the ones to copy (with the
// real addresses), no secret is printed, and both servers are gone when
// it ends.
func TestDemoOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, tokendAddr, ordersAddr := demoCmd(t, ctx, "DEMO_ONCE=1")
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("make demo DEMO_ONCE=1: %v\n%s", err, out)
	}
	for _, want := range []string{
		"SIGNIN=$(curl -s http://" + tokendAddr + "/oauth/token -d grant_type=password -d client_id=demo-app",
		`> {"access_token":"ey`,
		"curl -s -w ' %{http_code}\\n' http://" + ordersAddr + `/orders -H "Authorization: Bearer $AT"`,
		`"orders":[{"id":"o-1"`, ">  200",
		"http://" + tokendAddr + "/logout -d client_id=demo-app -d refresh_token=$RT", "> 204",
		"> HTTP/1.1 401 Unauthorized", `error="invalid_token"`,
		"DEMO_ONCE: the story ran",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	// The order of the story.
	if i, j := strings.Index(out, "> 204"), strings.Index(out, "> HTTP/1.1 401"); i < 0 || j < i {
		t.Errorf("the 401 does not come after the logout:\n%s", out)
	}
	// The reader client's secret (64 hex digits) is the servers' alone.
	if m := regexp.MustCompile(`\b[0-9a-f]{64}\b`).FindString(out); m != "" {
		t.Errorf("the demo printed what looks like the reader's secret: %s", m)
	}
	checkNothingLeft(t, cmd.Process.Pid, tokendAddr, ordersAddr)
	if dir := regexp.MustCompile(`logs +(\S+)/tokend\.log`).FindStringSubmatch(out); dir == nil {
		t.Error("the demo does not say where its logs are")
	} else if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's scratch directory %s is still there: %v", dir[1], err)
	}
}

// Ctrl-C (SIGINT to the foreground process group, as a terminal sends
// it) while the demo keeps running stops tokend and orders, and the
// demo's make exits.
func TestDemoCtrlC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, tokendAddr, ordersAddr := demoCmd(t, ctx)
	var out testkit.SyncBuffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = io.MultiWriter(pw, &out), &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	running := false
	for sc := bufio.NewScanner(pr); sc.Scan(); {
		if strings.Contains(sc.Text(), "Ctrl-C stops both") {
			running = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if !running {
		<-done
		t.Fatalf("the demo ended without waiting for Ctrl-C:\n%s", out.String())
	}
	for _, a := range []string{tokendAddr, ordersAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatalf("nothing listens on %s while the demo runs: %v\n%s", a, err, out.String())
		}
		c.Close()
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("make demo exited 0 on Ctrl-C")
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not stop within 60 s of Ctrl-C:\n%s", out.String())
	}
	if !bytes.Contains([]byte(out.String()), []byte("stopping tokend and orders")) {
		t.Errorf("the demo did not say it stops:\n%s", out.String())
	}
	checkNothingLeft(t, cmd.Process.Pid, tokendAddr, ordersAddr)
}
