package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
)

type profileResult struct {
	file string
	err  error
}

// startProfile fetches a CPU profile of tokend covering the measured phase
// from its DEBUG_ADDR (net/http/pprof) and writes it to
// <profile-dir>/cpu-<scenario>.pprof.
func startProfile(ctx context.Context, r *rig, scenario string) <-chan profileResult {
	out := make(chan profileResult, 1)
	secs := int(r.o.duration.Seconds())
	if secs < 1 {
		secs = 1
	}
	go func() {
		file := filepath.Join(r.o.profileDir, "cpu-"+scenario+".pprof")
		out <- profileResult{file: file, err: fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", r.debugBase, secs), file)}
	}()
	return out
}

func fetchProfile(ctx context.Context, url, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// The profile ends on its own after ?seconds; ctx (the scenario's
	// deadline) is not used for the request so the last second is kept.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printProfileTop prints the top entries of a profile with `go tool pprof`
// (to stderr, like the progress lines); the file stays for further study.
func printProfileTop(binary, file string) {
	progress("CPU profile written to %s (go tool pprof -http=: %s %s)", file, binary, file)
	for _, sort := range [][]string{{"-top"}, {"-top", "-cum"}} {
		args := append([]string{"tool", "pprof", "-nodecount=25"}, sort...)
		fmt.Printf("\n== %s: go tool pprof %s\n", filepath.Base(file), sort)
		cmd := exec.Command("go", append(args, binary, file)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			progress("go tool pprof: %v", err)
			return
		}
	}
}
