package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/store/storemetrics"
)

// backend is tokend's state as `serve` and the admin commands open it
// (docs/design.md, "The store stack"): the store, the revocation event
// log next to it and the sign-in limiter that lives where the store does.
// Its store is the stack
//
//	Redis (or embedded) store → metrics (serve only) → revocation events
//
// so a session end by the server or by the CLI becomes an event alike.
type backend struct {
	store   store.Store  // the top of the stack: what every caller uses
	log     events.Log   // the revocation event log the store appends to
	limiter loginLimiter // nil when every sign-in rate is off
	// redis is the Redis store at the bottom of the stack (its settings
	// are checked at start-up); nil with the embedded store.
	redis *redisstore.Store
}

// loginLimiter is a sign-in limiter of package ratelimit: what the server
// consults, and Clear for `tokend users unlock`.
type loginLimiter interface {
	server.LoginLimiter
	Clear(ctx context.Context, account string, ips ...string) error
}

// embeddedStore is the finding on a configuration without REDIS_URL.
var embeddedStore = newWarn("redis",
	"REDIS_URL is not set: using the embedded in-process store; all data is lost on restart, and the admin CLI cannot reach it (development only)",
	"set REDIS_URL (docs/operations.md, \"Redis\")")

// openBackend opens the store cfg names — Redis when REDIS_URL is set
// (waiting up to wait for it to answer: connectRedis), else the embedded
// one (with a warning: it lives and dies with this process) — and builds
// the stack on it. With reg, store operations are measured into reg
// (package storemetrics) and lost events counted there; the admin CLI
// passes nil.
func openBackend(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer, wait time.Duration) (*backend, error) {
	var (
		b         backend
		base      store.Store
		retention = events.Retention(cfg.AccessTTL)
		limits    = loginLimits(cfg)
	)
	if cfg.RedisURL == "" {
		if err := logFindings(ctx, log, []finding{embeddedStore}); err != nil {
			return nil, err
		}
		base, b.log = memstore.New(), events.NewMemoryLog(retention, 0, nil)
		if limits.Enabled() {
			b.limiter = ratelimit.NewMemory(limits, ratelimit.MemoryOptions{})
		}
	} else {
		rs, err := connectRedis(ctx, cfg, log, wait)
		if err != nil {
			return nil, err
		}
		base, b.redis = rs, rs
		b.log = events.NewRedisLog(rs.Redis(), cfg.RedisKeyPrefix, retention, 0)
		if limits.Enabled() {
			b.limiter = ratelimit.NewRedis(rs.Redis(), cfg.RedisKeyPrefix, limits)
		}
	}
	evopts := events.Options{AccessTTL: cfg.AccessTTL, Logger: log}
	if reg != nil {
		measured, err := storemetrics.Wrap(base, reg)
		if err != nil {
			base.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		lost := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokend_events_lost_total",
			Help: "Revocation events (session ends, client deletions and updates) that could not be appended to the event log.",
		})
		if err := reg.Register(lost); err != nil {
			base.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		base, evopts.Lost = measured, lost.Inc
	}
	b.store = events.Wrap(base, b.log, evopts)
	return &b, nil
}

// close closes the store (and with it the Redis client).
func (b *backend) close() error { return b.store.Close() }

// loginLimits are the sign-in rate limits cfg sets (LOGIN_RATE_*).
func loginLimits(cfg config.Config) ratelimit.Limits {
	return ratelimit.Limits{
		PerAccount:   ratelimit.Rate{N: cfg.LoginRateAccount.N, Period: cfg.LoginRateAccount.Period},
		PerAccountIP: ratelimit.Rate{N: cfg.LoginRateAccountIP.N, Period: cfg.LoginRateAccountIP.Period},
		PerIP:        ratelimit.Rate{N: cfg.LoginRateIP.N, Period: cfg.LoginRateIP.Period},
	}
}
