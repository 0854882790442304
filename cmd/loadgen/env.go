package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/verify"
)

// rig is what the benchmark runs against.
type rig struct {
	base      string        // tokend base URL
	debugBase string        // tokend's DEBUG_ADDR base URL, or ""
	dir       string        // scratch directory (keys, logs)
	redis     *redis.Client // the store's Redis, for INFO
	redisURL  string        // and its URL
	tokend    *exec.Cmd     // nil when -url was given
	cleanups  []func()
	env       []string // environment for tokend CLI calls
	o         options
	secret    string // confidential client secret

	mu       sync.Mutex
	verifier *verify.Verifier // for the verify scenario, made on first use
}

const (
	benchPublic       = "bench-web"
	benchConfidential = "bench-backend"
	benchPassword     = "bench-password-123"
	benchPrefix       = "tokendbench:"
)

func (r *rig) close() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// setup starts (or connects to) Redis and tokend and creates the users and
// clients the scenarios use.
func setup(ctx context.Context, o options) (*rig, error) {
	r := &rig{o: o}
	dir, err := os.MkdirTemp("", "tokend-bench-")
	if err != nil {
		return nil, err
	}
	r.dir = dir
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(dir) })

	redisURL := o.redisURL
	if redisURL == "" {
		addr, err := freePort()
		if err != nil {
			return r, err
		}
		_, port, _ := net.SplitHostPort(addr)
		// As docs/operations.md configures it (the session records' hash
		// encoding decides the memory per session).
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--hash-max-listpack-value", strconv.Itoa(redisstore.ListpackValue))
		if err := cmd.Start(); err != nil {
			return r, fmt.Errorf("start redis-server (is it installed?): %w", err)
		}
		r.cleanups = append(r.cleanups, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		redisURL = "redis://" + addr + "/0"
		progress("started redis-server on %s", addr)
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return r, fmt.Errorf("-redis-url: %w", err)
	}
	r.redis, r.redisURL = redis.NewClient(opt), redisURL
	r.cleanups = append(r.cleanups, func() { r.redis.Close() })
	if err := waitFor(ctx, func() error { return r.redis.Ping(ctx).Err() }); err != nil {
		return r, fmt.Errorf("redis: %w", err)
	}

	keysDir := filepath.Join(dir, "keys")
	r.env = append(os.Environ(),
		"REDIS_URL="+redisURL,
		"REDIS_KEY_PREFIX="+benchPrefix,
		"JWT_KEYS_DIR="+keysDir,
		"JWT_SIGNING_ALG="+o.alg,
		"JWT_AUDIENCE="+benchAudience,
		"PASSWORD_HASH_MEMORY="+strconv.FormatUint(uint64(o.argonMemory), 10),
		"PASSWORD_HASH_ITERATIONS="+strconv.FormatUint(uint64(o.argonIter), 10),
		// The benchmark signs in the same accounts many times a second;
		// brute-force limits would (correctly) refuse that.
		"RATE_LIMIT_LOGIN_PER_ACCOUNT=0", "RATE_LIMIT_LOGIN_PER_ACCOUNT_IP=0", "RATE_LIMIT_LOGIN_PER_IP=0",
	)
	if o.targetURL == "" {
		if _, err := r.cli(ctx, "", "keys", "generate", "--dir", keysDir, "--alg", o.alg); err != nil {
			return r, err
		}
	}
	// Fresh data each run: drop what an earlier run left under the prefix.
	if err := dropPrefix(ctx, r.redis, benchPrefix); err != nil {
		return r, err
	}
	if _, err := r.cli(ctx, "", "clients", "create", benchPublic, "--public", "--grants", "password,refresh_token", "--scopes", "read write"); err != nil {
		return r, err
	}
	out, err := r.cli(ctx, "", "clients", "create", benchConfidential, "--grants", "password,refresh_token,client_credentials", "--scopes", "read write")
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(line, "client_secret: "); ok {
			r.secret = strings.TrimSpace(s)
		}
	}
	if r.secret == "" {
		return r, errors.New("could not read the client secret from `tokend clients create`")
	}
	users := o.connections
	if o.baseline != "" {
		users = max(users, o.compareConns)
	}
	for i := 0; i < users; i++ {
		if _, err := r.cli(ctx, benchPassword, "users", "create", benchUser(i)); err != nil {
			return r, err
		}
	}
	progress("created %d users and 2 clients", users)

	if o.targetURL != "" {
		r.base = strings.TrimRight(o.targetURL, "/")
		if err := waitReady(ctx, r.base+"/readyz"); err != nil {
			return r, err
		}
		return r, nil
	}
	p, err := r.startTokend(ctx, o.tokend, o.debug)
	if err != nil {
		return r, err
	}
	r.tokend, r.base, r.debugBase = p.cmd, p.base, p.debug
	r.cleanups = append(r.cleanups, p.stop)
	return r, nil
}

// proc is a server process loadgen started.
type proc struct {
	cmd   *exec.Cmd
	base  string // http://host:port
	debug string // http://host:port of DEBUG_ADDR, or ""
	stop  func()
}

// startTokend starts `tokend serve` (binary) on a free port against the rig's
// Redis, with a pprof listener on another free port when debug is set,
// and waits until it is ready.
func (r *rig) startTokend(ctx context.Context, binary string, debug bool) (proc, error) {
	tokend, err := filepath.Abs(binary)
	if err != nil {
		return proc{}, err
	}
	addr, err := freePort()
	if err != nil {
		return proc{}, err
	}
	logf, err := os.CreateTemp(r.dir, "tokend-*.log")
	if err != nil {
		return proc{}, err
	}
	cmd := exec.Command(tokend, "serve")
	cmd.Env = append(r.env, "HTTP_ADDR="+addr, "JWT_ISSUER=http://"+addr)
	var p proc
	if debug {
		daddr, err := freePort()
		if err != nil {
			return proc{}, err
		}
		cmd.Env = append(cmd.Env, "DEBUG_ADDR="+daddr)
		p.debug = "http://" + daddr
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return proc{}, fmt.Errorf("start tokend: %w", err)
	}
	p.cmd, p.base = cmd, "http://"+addr
	p.stop = func() { stopProc(cmd); logf.Close() }
	progress("started tokend (pid %d) on %s, logs in %s", cmd.Process.Pid, addr, logf.Name())
	if err := waitReady(ctx, p.base+"/readyz"); err != nil {
		p.stop()
		return proc{}, fmt.Errorf("tokend did not become ready (see %s): %w", logf.Name(), err)
	}
	return p, nil
}

// stopProc interrupts a server and waits up to 10 s before killing it.
func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, url string) error {
	return waitFor(ctx, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func benchUser(i int) string { return fmt.Sprintf("bench-user-%03d", i) }

// cli runs the tokend CLI against the benchmark's Redis.
func (r *rig) cli(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, r.o.tokend, args...)
	cmd.Env = r.env
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("tokend %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func dropPrefix(ctx context.Context, rdb *redis.Client, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

func waitFor(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuSeconds is the user+system CPU time of a process, from /proc.
func cpuSeconds(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 (1-based) of the whole line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clkTck = 100 // USER_HZ on Linux
	return (ut + st) / clkTck, true
}

// redisCPU is Redis's own CPU seconds (INFO cpu), or 0.
func redisCPU(ctx context.Context, rdb *redis.Client) float64 {
	v, _ := redisinfo.CPUSeconds(ctx, rdb)
	return v
}

// infoField is one numeric field of an INFO section, or 0.
func infoField(ctx context.Context, rdb *redis.Client, section, field string) float64 {
	info, err := redisinfo.Read(ctx, rdb, section)
	if err != nil {
		return 0
	}
	f, _ := info.Float(field)
	return f
}

// mallocs scrapes the process's cumulative allocation count from /metrics
// (the Prometheus Go collector); false when it is not exposed.
func mallocs(base string) (float64, bool) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// selfCPU is this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
