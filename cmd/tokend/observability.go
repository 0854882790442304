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
)

// newRegistry is serve's metrics registry, with the Go runtime and
// process collectors; the store (openBackend) and the server add theirs.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
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
