// Command orders is an example resource server: a service that trusts
// tokend's access tokens and checks them locally with the verify package,
// never calling tokend per request.
//
//	GET /orders         the signed-in user's orders (any valid token)
//	GET /admin/orders   every order (a token whose roles include "admin")
//
// Run it against a tokend (see README.md, "Protecting a service with
// verify"):
//
//	go run ./examples/orders -issuer http://localhost:8080 -audience orders -addr :9090
//
// It accepts only tokens whose aud names it ("orders" unless -audience
// says otherwise): start tokend with JWT_AUDIENCE=orders.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokend/tokend/verify"
)

func main() {
	issuer := flag.String("issuer", "http://localhost:8080", "tokend's issuer URL (its JWT_ISSUER)")
	addr := flag.String("addr", ":9090", "address to listen on")
	audience := flag.String("audience", "orders", "this service's audience: the aud claim tokens must carry (one of tokend's JWT_AUDIENCE)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *issuer, log, verify.WithAudience(*audience)); err != nil {
		log.Error("orders", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

// run serves the example on addr until ctx ends.
func run(ctx context.Context, addr, issuer string, log *slog.Logger, opts ...verify.Option) error {
	v, err := verify.New(ctx, issuer, append(opts, verify.WithLogger(log))...)
	if err != nil {
		return fmt.Errorf("trust tokend at %s: %w", issuer, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: newHandler(v), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("orders listening", slog.String("addr", ln.Addr().String()), slog.String("issuer", issuer))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newHandler returns the example's routes: every route goes through the
// verifier's middleware; the admin route also requires the role "admin".
func newHandler(v *verify.Verifier) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /orders", v.Middleware(http.HandlerFunc(myOrders)))
	mux.Handle("GET /admin/orders", v.Middleware(verify.RequireRole("admin")(http.HandlerFunc(allOrders))))
	return mux
}

type order struct {
	ID   string `json:"id"`
	Item string `json:"item"`
}

// myOrders answers with the caller's orders; the caller is the token's
// subject (the tokend user id).
func myOrders(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.ClaimsFrom(r.Context()) // always there behind Middleware
	writeJSON(w, map[string]any{
		"user_id": c.Subject,
		"roles":   c.Roles,
		"orders":  []order{{ID: "o-1", Item: "coffee beans"}, {ID: "o-2", Item: "grinder"}},
	})
}

// allOrders answers with every user's orders (admins only).
func allOrders(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.ClaimsFrom(r.Context())
	writeJSON(w, map[string]any{
		"admin":  c.Subject,
		"orders": []order{{ID: "o-1", Item: "coffee beans"}, {ID: "o-2", Item: "grinder"}, {ID: "o-3", Item: "kettle"}},
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
