package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/store/storemetrics"
)

// instrument builds serve's metrics registry (Go runtime, process, store
// latency; the server adds its own) and the sign-in rate limiter that
// matches the store: in Redis next to the data, or in memory with the
// embedded store. It returns the measured store.
func instrument(cfg config.Config, st store.Store, log *slog.Logger) (store.Store, server.LoginLimiter, *prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	measured, err := storemetrics.Wrap(st, reg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metrics: %w", err)
	}
	limits := ratelimit.Limits{
		PerAccount:   ratelimit.Rate{N: cfg.LoginRateAccount.N, Period: cfg.LoginRateAccount.Period},
		PerAccountIP: ratelimit.Rate{N: cfg.LoginRateAccountIP.N, Period: cfg.LoginRateAccountIP.Period},
		PerIP:        ratelimit.Rate{N: cfg.LoginRateIP.N, Period: cfg.LoginRateIP.Period},
	}
	log.Info("sign-in rate limits",
		slog.String("per_account", cfg.LoginRateAccount.String()), slog.String("per_account_ip", cfg.LoginRateAccountIP.String()),
		slog.String("per_ip", cfg.LoginRateIP.String()),
		slog.Int("trusted_proxies", len(cfg.TrustedProxies)))
	if !limits.Enabled() {
		return measured, nil, reg, nil
	}
	if rs, ok := st.(*redisstore.Store); ok {
		return measured, ratelimit.NewRedis(rs.Redis(), cfg.RedisKeyPrefix, limits), reg, nil
	}
	return measured, ratelimit.NewMemory(limits, ratelimit.MemoryOptions{}), reg, nil
}

// redisLogger sends go-redis's own log lines (dial failures, pool
// trouble) through slog, so they are structured like every other line,
// and removes the Redis password from them should one ever appear.
type redisLogger struct {
	log    *slog.Logger
	secret []string // strings never to print
}

// setRedisLogger routes go-redis's package-level logger through log.
// go-redis has one logger per process; serve and the CLI both set it.
func setRedisLogger(log *slog.Logger, redisURL string) {
	redis.SetLogger(&redisLogger{log: log, secret: urlSecrets(redisURL)})
}

func (l *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	for _, s := range l.secret {
		msg = strings.ReplaceAll(msg, s, config.Redacted)
	}
	l.log.LogAttrs(ctx, slog.LevelWarn, "redis client", slog.String("component", "go-redis"), slog.String("detail", msg))
}

// urlSecrets returns the password of rawURL, and the values of query
// parameters that carry one (a Sentinel URL's password=), raw and
// unescaped.
func urlSecrets(rawURL string) []string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // shorter strings would redact ordinary text
			out = append(out, s)
			if e := url.QueryEscape(s); e != s {
				out = append(out, e)
			}
		}
	}
	if p, ok := u.User.Password(); ok {
		add(p)
	}
	for k, vs := range u.Query() {
		if lk := strings.ToLower(k); strings.Contains(lk, "password") || strings.Contains(lk, "secret") {
			for _, v := range vs {
				add(v)
			}
		}
	}
	return out
}
