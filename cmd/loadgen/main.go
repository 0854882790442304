// Command loadgen is tokend's load benchmark (SPEC §11). It starts a
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
	flag.StringVar(&scen, "scenario", "all", "comma-separated: "+strings.Join(allScenarios, ",")+" or all")
	flag.StringVar(&o.out, "out", "bench-results/bench.json", "JSON results file")
	flag.UintVar(&o.argonMemory, "argon-memory", 19456, "PASSWORD_HASH_MEMORY for the started tokend (KiB)")
	flag.UintVar(&o.argonIter, "argon-iterations", 2, "PASSWORD_HASH_ITERATIONS for the started tokend")
	flag.StringVar(&o.alg, "alg", "ES256", "signing algorithm of the started tokend: ES256, EdDSA or RS256")
	flag.Parse()
	if scen == "all" {
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
	if o.connections < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -connections must be ≥ 1 and -duration > 0")
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
