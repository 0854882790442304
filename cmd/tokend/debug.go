package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugMux serves Go's runtime profiles (net/http/pprof) on a mux of its
// own. It is mounted only on the DEBUG_ADDR listener, never on the API's:
// profiles reveal internals and a CPU profile costs CPU while it runs.
// The handlers are registered explicitly so nothing depends on
// http.DefaultServeMux (which importing net/http/pprof also fills).
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also heap, goroutine, allocs, block, mutex, threadcreate
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startDebug listens on addr and serves debugMux until ctx ends. It
// returns the bound address (addr may name port 0).
func startDebug(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("DEBUG_ADDR: %w", err)
	}
	hs := &http.Server{
		Handler:           debugMux(),
		ReadHeaderTimeout: 5 * time.Second,
		// No WriteTimeout: /debug/pprof/profile?seconds=N and /trace
		// answer after N seconds.
		IdleTimeout: 90 * time.Second,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = hs.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	log.Warn("pprof debug listener on (DEBUG_ADDR); it has no authentication, keep it private",
		slog.String("addr", ln.Addr().String()))
	return ln.Addr().String(), nil
}
