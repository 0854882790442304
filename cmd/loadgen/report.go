package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

type result struct {
	Scenario           string  `json:"scenario"`
	What               string  `json:"what"`
	Connections        int     `json:"connections"`
	Seconds            float64 `json:"seconds"`
	Requests           int64   `json:"requests"`
	Errors             int64   `json:"errors"`
	RPS                float64 `json:"rps"`
	P50                float64 `json:"p50_ms"`
	P90                float64 `json:"p90_ms"`
	P99                float64 `json:"p99_ms"`
	Max                float64 `json:"max_ms"`
	ServerCPUPerReqUS  float64 `json:"server_cpu_us_per_req"` // -1: not measured
	RedisCPUPerReqUS   float64 `json:"redis_cpu_us_per_req"`
	LoadgenCPUPerReqUS float64 `json:"loadgen_cpu_us_per_req"`
	AllocsPerReq       float64 `json:"server_allocs_per_req"` // -1: not measured
	LastError          string  `json:"last_error,omitempty"`
	Profile            string  `json:"cpu_profile,omitempty"`
}

type settings struct {
	Connections     int    `json:"connections"`
	Duration        string `json:"duration"`
	Warmup          string `json:"warmup"`
	ArgonMemoryKiB  uint   `json:"argon2_memory_kib"`
	ArgonIterations uint   `json:"argon2_iterations"`
	Alg             string `json:"signing_alg"`
}

type report struct {
	Time                 time.Time `json:"time"`
	Machine              string    `json:"machine"`
	Settings             settings  `json:"settings"`
	Results              []result  `json:"results"`
	RedisBytesPerSession float64   `json:"redis_bytes_per_session,omitempty"`
	SessionsMeasured     int64     `json:"sessions_measured,omitempty"`
	PasswordVsArgon      float64   `json:"password_rps_over_argon2_rps,omitempty"`
	PasswordCPUVsArgon   float64   `json:"password_cpu_over_argon2_cpu,omitempty"` // (tokend + Redis) CPU per sign-in ÷ CPU per bare hash
	SideBySide           []sideRun `json:"side_by_side,omitempty"`
	opts                 options
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %d CPUs, %s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.Version())
}

func (r *report) print(w io.Writer) {
	r.Time = time.Now().UTC()
	if len(r.Results) == 0 {
		printSideBySide(w, r.SideBySide, r.opts)
		return
	}
	fmt.Fprintf(w, "\ntokend load benchmark — %s\nmachine: %s; %s; %d connections, %s per scenario after %s warm-up\n\n",
		r.Time.Format(time.RFC3339), r.Machine, r.Settings.Alg, r.Settings.Connections, r.Settings.Duration, r.Settings.Warmup)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\trequests\terrors\ttokend CPU µs/req\tRedis µs/req\tloadgen µs/req\ttokend allocs/req\t")
	for _, x := range r.Results {
		cpu, allocs, rcpu := "-", "-", "-"
		if x.ServerCPUPerReqUS >= 0 {
			cpu = fmt.Sprintf("%.0f", x.ServerCPUPerReqUS)
		}
		if x.AllocsPerReq >= 0 {
			allocs = fmt.Sprintf("%.0f", x.AllocsPerReq)
		}
		if x.RedisCPUPerReqUS > 0 {
			rcpu = fmt.Sprintf("%.0f", x.RedisCPUPerReqUS)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\t%s\t%.0f\t%s\t\n", x.Scenario, x.RPS, x.P50, x.P90, x.P99, x.Max, x.Requests, x.Errors, cpu, rcpu, x.LoadgenCPUPerReqUS, allocs)
	}
	tw.Flush()
	for _, x := range r.Results {
		if x.LastError != "" {
			fmt.Fprintf(w, "  %s: last error: %.200s\n", x.Scenario, x.LastError)
		}
	}
	if r.SessionsMeasured > 0 {
		fmt.Fprintf(w, "\nRedis memory per live session: %.0f bytes (%d sessions over %d users)\n", r.RedisBytesPerSession, r.SessionsMeasured, r.Settings.Connections)
	}
	if r.PasswordVsArgon > 0 {
		fmt.Fprintf(w, "password grant rate / argon2id-alone rate: %.3f (token work overhead %.1f%%)\n", r.PasswordVsArgon, (1-r.PasswordVsArgon)*100)
	}
	if r.PasswordCPUVsArgon > 0 {
		fmt.Fprintf(w, "password grant CPU (tokend + Redis) / argon2id-alone CPU, per operation: %.3f (token work overhead %.1f%%)\n", r.PasswordCPUVsArgon, (r.PasswordCPUVsArgon-1)*100)
	}
	printSideBySide(w, r.SideBySide, r.opts)
}
