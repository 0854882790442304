package main

// Helpers for tests that run the real tokend binary as separate processes:
// the binary is built once per test run and removed by TestMain.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// tokendBinary builds cmd/tokend once (with -race when the tests run with
// it) into a temporary directory that removeBinary deletes.
func tokendBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tokend-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tokend")
		start := time.Now()
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = &buildError{err: err, out: string(out)}
			return
		}
		t.Logf("built the tokend binary in %v", time.Since(start).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatalf("building tokend: %v", binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func removeBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// procEnv is the whole environment of a tokend process: nothing is
// inherited but PATH, so the developer's own REDIS_URL and friends never
// leak in.
func procEnv(vars ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	if raceEnabled {
		// No 1 s pause at exit (the race runtime's default), and a race
		// ends the process with status 66 so the test notices.
		env = append(env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	}
	return append(env, vars...)
}

// cliResult is one run of the CLI binary.
type cliResult struct {
	stdout, stderr string
	err            error
}

// runBin runs the binary with env and stdin.
func runBin(t *testing.T, bin string, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = procEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return cliResult{stdout: out.String(), stderr: errb.String(), err: err}
}

// mustRunBin runs the binary and fails the test unless it succeeds.
func mustRunBin(t *testing.T, bin string, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	r := runBin(t, bin, env, stdin, args...)
	if r.err != nil {
		t.Fatalf("tokend %s: %v\n%s%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r
}

// replica is one `tokend serve` process.
type replica struct {
	base string              // http://127.0.0.1:port
	out  *testkit.SyncBuffer // stdout and stderr
	cmd  *exec.Cmd
	done chan struct{}
}

// startServe starts `tokend serve` on a free port and waits for /healthz.
// It is stopped with SIGTERM (a graceful shutdown) when the test ends.
func startServe(t *testing.T, bin string, env []string) *replica {
	t.Helper()
	return startServeAt(t, bin, env, testredis.FreeAddr(t))
}

// startServeAt is startServe on addr (a restart of a replica reuses its
// address).
func startServeAt(t *testing.T, bin string, env []string, addr string) *replica {
	t.Helper()
	r := &replica{base: "http://" + addr, out: &testkit.SyncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "serve")
	r.cmd.Env = procEnv(append(env, "HTTP_ADDR="+addr)...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.stop()
		if strings.Contains(r.out.String(), "WARNING: DATA RACE") {
			t.Errorf("tokend serve on %s had a data race", addr)
		}
		if t.Failed() {
			t.Logf("tokend serve on %s:\n%s", addr, r.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(r.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return r
		}
		select {
		case <-r.done:
			t.Fatalf("tokend serve exited: %s", r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend serve on %s did not answer: %v\n%s", addr, err, r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the process down gracefully (SIGTERM), killing it after 10 s.
func (r *replica) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// reply is a decoded HTTP answer.
type reply struct {
	status int
	header http.Header
	json   map[string]any
	body   string
}

func (r reply) str(k string) string { s, _ := r.json[k].(string); return s }

// post sends a form, with HTTP Basic client authentication when basic is
// [id, secret].
func post(t *testing.T, hc *http.Client, u string, form url.Values, basic ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
	_ = json.Unmarshal(body, &r.json)
	return r
}
