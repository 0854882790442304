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
	return startSide(ctx, "DEBUG_ADDR", addr, debugMux(), log, slog.LevelWarn,
		"pprof debug listener on (DEBUG_ADDR); it has no authentication, keep it private")
}

// startSide serves h on a listener of its own at addr (the address of the
// variable name) until ctx ends, and logs msg at level with the bound
// address. Its
// requests are neither logged nor counted: it is for operators' tools
// (pprof, the metrics scraper). No WriteTimeout:
// /debug/pprof/profile?seconds=N and /trace answer after N seconds.
func startSide(ctx context.Context, name, addr string, h http.Handler, log *slog.Logger, level slog.Level, msg string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = hs.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	log.LogAttrs(ctx, level, msg, slog.String("addr", ln.Addr().String()))
	return ln.Addr().String(), nil
}
