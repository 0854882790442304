package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The side-by-side comparison (docs/performance.md, "Side by side"): tokend and the bare
// go-oauth2 server of ../shared/baseline, on the refresh and
// client_credentials workloads, measured alternately in one sitting. Every
// run uses a fresh server process (the baseline's in-memory store grows
// without bound) and reads CPU from /proc/<pid>/stat of that process;
// tokend's Redis CPU comes from INFO cpu. The figure that counts is the
// ratio of CPU per request, (tokend + Redis) / go-oauth2, per round.

const (
	baselineClient   = "bench-client" // hard-wired in the baseline's main.go
	baselineSecret   = "bench-secret"
	baselineUser     = "test"
	baselinePassword = "test"
)

var sideWorkloads = []struct {
	name   string
	target float64 // (tokend + Redis) CPU per request ≤ target × go-oauth2's (docs/performance.md)
}{
	{"refresh", 0.55},
	{"client_credentials", 0.5},
}

const p99Target = 10.0 // ms, refresh at 16 connections (docs/performance.md)

// sideRun is one measured run of one server on one workload.
type sideRun struct {
	Round    int     `json:"round"`
	Workload string  `json:"workload"`
	System   string  `json:"system"` // tokend or go-oauth2
	RPS      float64 `json:"rps"`
	P99      float64 `json:"p99_ms"`
	CPU      float64 `json:"server_cpu_us_per_req"`
	RedisCPU float64 `json:"redis_cpu_us_per_req,omitempty"`
	Errors   int64   `json:"errors"`
	Requests int64   `json:"requests"`
}

// baselineScenarios drive the go-oauth2 server as the tokend scenarios
// drive tokend: refresh chains started by a password sign-in (user
// test/test), and client_credentials with client_secret_basic.
var baselineScenarios = map[string]scenario{
	"refresh": {name: "refresh", what: "go-oauth2 refresh chains", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		auth := basic(baselineClient, baselineSecret)
		signIn := func() (string, error) {
			st, err := c.post(ctx, "/oauth/token", "grant_type=password&username="+baselineUser+"&password="+baselinePassword+"&scope=read", auth, &buf)
			if err == nil && st != 200 {
				err = fmt.Errorf("go-oauth2 sign in: %d %s", st, buf.String())
			}
			return field(buf.Bytes(), "refresh_token"), err
		}
		rt, err := signIn()
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			st, err := c.post(ctx, "/oauth/token", "grant_type=refresh_token&refresh_token="+rt, auth, &buf)
			if err != nil {
				return err
			}
			if st != 200 {
				err := fmt.Errorf("go-oauth2 refresh: %d %s", st, buf.String())
				if nrt, serr := signIn(); serr == nil {
					rt = nrt
				}
				return err
			}
			rt = field(buf.Bytes(), "refresh_token")
			return nil
		}, nil
	}},
	"client_credentials": {name: "client_credentials", what: "go-oauth2 client_credentials", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		auth := basic(baselineClient, baselineSecret)
		return func(ctx context.Context) error {
			st, err := c.post(ctx, "/oauth/token", "grant_type=client_credentials&scope=read", auth, &buf)
			if err == nil && st != 200 {
				err = fmt.Errorf("go-oauth2 client_credentials: %d %s", st, buf.String())
			}
			return err
		}, nil
	}},
}

// sideBySide runs -rounds rounds; in each, both workloads on both servers,
// the server that goes first alternating from round to round.
func sideBySide(ctx context.Context, r *rig) ([]sideRun, error) {
	bin, err := filepath.Abs(r.o.baseline)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("-baseline: %w (build it from ../shared/baseline/gooauth2-server; make bench does)", err)
	}
	tokenFlag := map[string]string{"ES256": "jwt-es256", "EdDSA": "jwt-eddsa", "RS256": "jwt-rs256"}[r.o.alg]
	if tokenFlag == "" {
		return nil, fmt.Errorf("-alg %s: the baseline has no such algorithm", r.o.alg)
	}
	o := r.o
	o.connections, o.duration, o.warmup = o.compareConns, o.compareDur, o.compareWarm
	o.profileDir = ""
	progress("side by side with go-oauth2: %d rounds × 2 workloads × 2 servers, %s + %s each, %d connections",
		o.rounds, o.compareWarm, o.compareDur, o.compareConns)
	var runs []sideRun
	for round := 1; round <= o.rounds; round++ {
		for _, w := range sideWorkloads {
			systems := []string{"tokend", "go-oauth2"}
			if o.before != "" {
				systems = append(systems, "tokend-before")
			}
			if o.floor != "" {
				systems = append(systems, "floor")
			}
			// Rotate which server goes first from round to round.
			k := (round - 1) % len(systems)
			systems = append(systems[k:], systems[:k]...)
			for _, sys := range systems {
				if err := ctx.Err(); err != nil {
					return runs, err
				}
				var res result
				var err error
				switch sys {
				case "tokend":
					res, err = runTokendOnce(ctx, r, o, o.tokend, w.name)
				case "tokend-before":
					res, err = runTokendOnce(ctx, r, o, o.before, w.name)
				case "floor":
					res, err = runBaselineOnce(ctx, r, o, o.floor, tokenFlag, w.name, "-redis-url", r.redisURL)
				default:
					res, err = runBaselineOnce(ctx, r, o, bin, tokenFlag, w.name)
				}
				if err != nil {
					return runs, fmt.Errorf("side by side, round %d, %s on %s: %w", round, w.name, sys, err)
				}
				if res.Errors > 0 {
					progress("  %s on %s: %d errors, last: %.200s", w.name, sys, res.Errors, res.LastError)
				}
				runs = append(runs, sideRun{Round: round, Workload: w.name, System: sys, RPS: res.RPS, P99: res.P99,
					CPU: res.ServerCPUPerReqUS, RedisCPU: res.RedisCPUPerReqUS, Errors: res.Errors, Requests: res.Requests})
			}
		}
	}
	return runs, nil
}

func runTokendOnce(ctx context.Context, r *rig, o options, binary, workload string) (result, error) {
	p, err := r.startTokend(ctx, binary, false)
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	rr := &rig{base: p.base, redis: r.redis, tokend: p.cmd, env: r.env, o: o, secret: r.secret, dir: r.dir}
	conns := newPool(p.base)
	defer conns.close()
	res, _, err := drive(ctx, rr, conns, scenarios[workload])
	return res, err
}

// runBaselineOnce runs a server that speaks the baseline's protocol: the
// go-oauth2 baseline, or the floor server (extra: its -redis-url, whose
// CPU is then counted).
func runBaselineOnce(ctx context.Context, r *rig, o options, bin, tokenFlag, workload string, extra ...string) (result, error) {
	addr, err := freePort()
	if err != nil {
		return result{}, err
	}
	logf, err := os.CreateTemp(r.dir, "go-oauth2-*.log")
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-token", tokenFlag}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start %s: %w", bin, err)
	}
	defer stopProc(cmd)
	progress("started %s (pid %d) on %s", filepath.Base(bin), cmd.Process.Pid, addr)
	if err := waitFor(ctx, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return result{}, fmt.Errorf("%s did not start (see %s): %w", bin, logf.Name(), err)
	}
	base := "http://" + addr
	rr := &rig{base: base, tokend: cmd, o: o, dir: r.dir}
	if len(extra) > 0 {
		rr.redis = r.redis
	}
	conns := newPool(base)
	defer conns.close()
	res, _, err := drive(ctx, rr, conns, baselineScenarios[workload])
	return res, err
}

// spread is a median with its range.
type spread struct{ med, lo, hi float64 }

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{m, s[0], s[len(s)-1]}
}

func (s spread) format(prec int) string {
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.med, prec, s.lo, prec, s.hi)
}

// printSideBySide prints each run and then, per workload, the medians and
// ranges over rounds and whether the targets are met.
func printSideBySide(w io.Writer, runs []sideRun, o options) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nside by side with the bare go-oauth2 v4.5.4 server (in-memory, not atomic), %s, %d connections, %d rounds of %s (+%s warm-up), alternating, fresh processes\n\n",
		o.alg, o.compareConns, o.rounds, o.compareDur, o.compareWarm)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tworkload\tserver\treq/s\tp99 ms\tserver CPU µs/req\tRedis µs/req\ttotal µs/req\terrors\t")
	for _, x := range runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%d\t\n", x.Round, x.Workload, x.System, x.RPS, x.P99, x.CPU, x.RedisCPU, x.CPU+x.RedisCPU, x.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tserver\tserver µs/req\tRedis µs/req\tserver+Redis µs/req\tgo-oauth2 µs/req\tratio (server+Redis)/go-oauth2\ttarget\tmet\tp99 ms\tgo-oauth2 p99 ms\treq/s\tgo-oauth2 req/s\t")
	for _, wl := range sideWorkloads {
		for _, name := range []string{"tokend", "tokend-before", "floor"} {
			printSummaryRow(tw, runs, o, wl.name, wl.target, name)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, strings.Repeat(" ", 0)+"(median (min–max) over rounds; ratio per round, then its median; p99 target ≤ 10 ms for refresh at 16 connections)")
	printOverFloor(w, runs, o)
}

// printOverFloor prints, when the floor server ran, what tokend spends
// over it per round: (tokend + Redis) ÷ (floor + Redis), the part of the
// cost that is tokend's own code (docs/performance.md, "The floor").
func printOverFloor(w io.Writer, runs []sideRun, o options) {
	for _, wl := range sideWorkloads {
		var ratio, extra []float64
		for round := 1; round <= o.rounds; round++ {
			t, f := runOf(runs, round, wl.name, "tokend"), runOf(runs, round, wl.name, "floor")
			if t != nil && f != nil && f.CPU > 0 {
				ratio = append(ratio, (t.CPU+t.RedisCPU)/(f.CPU+f.RedisCPU))
				extra = append(extra, t.CPU+t.RedisCPU-f.CPU-f.RedisCPU)
			}
		}
		if len(ratio) > 0 {
			fmt.Fprintf(w, "%s: tokend + Redis over the floor + Redis: %s× (%s µs/req more)\n", wl.name, spreadOf(ratio).format(2), spreadOf(extra).format(0))
		}
	}
}

// runOf is the run of system on workload in round, or nil.
func runOf(runs []sideRun, round int, workload, system string) *sideRun {
	for i := range runs {
		if x := &runs[i]; x.Round == round && x.Workload == workload && x.System == system {
			return x
		}
	}
	return nil
}

// printSummaryRow prints one tokend build's medians on one workload, each
// round's ratio taken against the go-oauth2 run of the same round.
func printSummaryRow(tw io.Writer, runs []sideRun, o options, workload string, target float64, system string) {
	var tcpu, rcpu, total, bcpu, ratio, tp99, bp99, trps, brps []float64
	for round := 1; round <= o.rounds; round++ {
		t, b := runOf(runs, round, workload, system), runOf(runs, round, workload, "go-oauth2")
		if t == nil || b == nil {
			continue
		}
		tcpu, rcpu, total = append(tcpu, t.CPU), append(rcpu, t.RedisCPU), append(total, t.CPU+t.RedisCPU)
		bcpu, tp99, bp99 = append(bcpu, b.CPU), append(tp99, t.P99), append(bp99, b.P99)
		trps, brps = append(trps, t.RPS), append(brps, b.RPS)
		if b.CPU > 0 {
			ratio = append(ratio, (t.CPU+t.RedisCPU)/b.CPU)
		}
	}
	if len(ratio) == 0 {
		return
	}
	r := spreadOf(ratio)
	met := "yes"
	if r.med > target {
		met = "no"
	}
	p99 := spreadOf(tp99)
	if workload == "refresh" && o.compareConns == 16 {
		if p99.med > p99Target {
			met += "; p99 no"
		} else {
			met += "; p99 yes"
		}
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t≤ %.2f\t%s\t%s\t%s\t%s\t%s\t\n", workload, system,
		spreadOf(tcpu).format(0), spreadOf(rcpu).format(0), spreadOf(total).format(0), spreadOf(bcpu).format(0),
		r.format(2), target, met, p99.format(2), spreadOf(bp99).format(2), spreadOf(trps).format(0), spreadOf(brps).format(0))
}
