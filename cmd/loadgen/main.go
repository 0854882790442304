// Command loadgen is tokend's load benchmark (docs/performance.md). It starts a
// private redis-server and a tokend process (or uses the ones you name),
// creates users and clients with the tokend CLI, drives each scenario with
// a fixed number of connections for a fixed time, and reports requests per
// second, latency percentiles, errors, server CPU and allocations per
// request, and Redis memory per live session — as a table on stdout and a
// JSON file.
//
//	go run ./cmd/loadgen -tokend bin/tokend -duration 10s -connections 16 -scenario all
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

type options struct {
	tokend      string
	redisURL    string
	targetURL   string
	duration    time.Duration
	warmup      time.Duration
	connections int
	scenarios   []string
	out         string
	argonMemory uint
	argonIter   uint
	alg         string
	debug       bool // start tokend with DEBUG_ADDR (for -profile-dir)

	profileDir string // write a CPU profile of tokend per HTTP scenario here

	baseline     string        // go-oauth2 baseline binary for the side-by-side; "" = none
	before       string        // another tokend binary to run in the side-by-side too (before/after)
	floor        string        // the floor server (cmd/floor) to run in the side-by-side too; "" = none
	rounds       int           // side-by-side rounds
	compareDur   time.Duration // measured time per side-by-side run
	compareWarm  time.Duration // warm-up per side-by-side run
	compareConns int           // connections in the side-by-side
}

var allScenarios = []string{"refresh", "client_credentials", "introspect", "verify", "password"}

func main() {
	var o options
	var scen string
	flag.StringVar(&o.tokend, "tokend", "bin/tokend", "tokend binary to start (ignored with -url)")
	flag.StringVar(&o.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis for tokend; empty starts a private redis-server")
	flag.StringVar(&o.targetURL, "url", "", "benchmark an already running tokend at this URL (it must use -redis-url's Redis); empty starts one")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per scenario")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up per scenario")
	flag.IntVar(&o.connections, "connections", 16, "concurrent connections (virtual clients)")
	flag.StringVar(&scen, "scenario", "all", "comma-separated: "+strings.Join(allScenarios, ",")+", all, or none (with -baseline: the side-by-side alone)")
	flag.StringVar(&o.out, "out", "bench-results/bench.json", "JSON results file")
	flag.UintVar(&o.argonMemory, "argon-memory", 19456, "PASSWORD_HASH_MEMORY for the started tokend (KiB)")
	flag.UintVar(&o.argonIter, "argon-iterations", 2, "PASSWORD_HASH_ITERATIONS for the started tokend")
	flag.StringVar(&o.alg, "alg", "ES256", "signing algorithm of the started tokend: ES256, EdDSA or RS256")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write a CPU profile of tokend (pprof, from DEBUG_ADDR) for each HTTP scenario into this directory and print its top entries")
	flag.StringVar(&o.baseline, "baseline", "", "go-oauth2 baseline server binary (../shared/baseline): run the side-by-side comparison after the scenarios")
	flag.StringVar(&o.floor, "floor", "", "side-by-side: also run this floor server binary (cmd/floor: net/http, one signature, one Redis script; docs/performance.md)")
	flag.StringVar(&o.before, "before", "", "side-by-side: also run this tokend binary (e.g. built from main) as tokend-before, for a before/after in the same sitting")
	flag.IntVar(&o.rounds, "rounds", 3, "side-by-side: rounds (each runs both servers on both workloads, alternating which goes first)")
	flag.DurationVar(&o.compareDur, "compare-duration", 5*time.Second, "side-by-side: measured time per run")
	flag.DurationVar(&o.compareWarm, "compare-warmup", time.Second, "side-by-side: warm-up per run")
	flag.IntVar(&o.compareConns, "compare-connections", 16, "side-by-side: connections")
	flag.Parse()
	o.debug = o.profileDir != ""
	if scen == "none" {
		o.scenarios = nil
	} else if scen == "all" {
		o.scenarios = allScenarios
	} else {
		for _, s := range strings.Split(scen, ",") {
			if !contains(allScenarios, s) {
				fmt.Fprintf(os.Stderr, "loadgen: unknown scenario %q (use %s or all)\n", s, strings.Join(allScenarios, ","))
				os.Exit(2)
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	if o.connections < 1 || o.duration <= 0 || o.compareConns < 1 || o.compareDur <= 0 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -connections, -compare-connections and -rounds must be ≥ 1, -duration and -compare-duration > 0")
		os.Exit(2)
	}
	if o.targetURL != "" && (o.baseline != "" || o.profileDir != "") {
		fmt.Fprintln(os.Stderr, "loadgen: -baseline and -profile-dir start their own tokend processes; they cannot be used with -url")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout)
	if o.out != "" {
		if len(rep.Results) == 0 && len(rep.SideBySide) == 0 {
			return
		}
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		fmt.Printf("\nresults written to %s\n", o.out)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
