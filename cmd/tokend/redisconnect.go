package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store/redisstore"
)

// Backoff between two attempts to reach Redis at start-up.
const (
	redisRetryFirst = 100 * time.Millisecond
	redisRetryMax   = 2 * time.Second
)

// connectRedis opens the Redis store cfg names and waits for it to
// answer: `serve` for up to REDIS_STARTUP_TIMEOUT (wait), trying again
// with backoff, because compose and orchestrators start services in
// parallel; the admin CLI once (wait 0). Each failed try is one log line
// saying what is wrong and what to check (redisTrouble) — go-redis's own
// lines about failed dials are silenced until then — and a trouble that
// waiting cannot cure (a refused password, a TLS mismatch) ends the wait
// at once. The error names the Redis (its URL, password redacted).
func connectRedis(ctx context.Context, cfg config.Config, log *slog.Logger, wait time.Duration) (*redisstore.Store, error) {
	rdb, err := redisstore.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rs, err := redisstore.New(rdb, redisstore.Options{Prefix: cfg.RedisKeyPrefix, ServerClock: true})
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("REDIS_KEY_PREFIX: %w", err)
	}
	where := config.RedactURL(cfg.RedisURL)
	redis.SetLogger(silentRedisLogger{})
	defer setRedisLogger(log, cfg.RedisURL)
	start := time.Now()
	deadline := start.Add(wait)
	backoff := redisRetryFirst
	for attempt := 1; ; attempt++ {
		err := rs.Ping(ctx)
		if err == nil {
			return rs, nil
		}
		hint, lasting := redisTrouble(err)
		if lasting || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			rs.Close()
			tried := ""
			if attempt > 1 {
				tried = fmt.Sprintf(" (%d tries in %v, REDIS_STARTUP_TIMEOUT=%s)", attempt, time.Since(start).Round(time.Millisecond), config.FormatDuration(wait))
			}
			return nil, fmt.Errorf("REDIS_URL: cannot use the Redis at %s%s: %v: %s", where, tried, err, hint)
		}
		log.LogAttrs(ctx, slog.LevelWarn, "Redis does not answer yet; trying again",
			slog.String("redis", where), slog.Int("attempt", attempt), slog.String("error", err.Error()),
			slog.String("hint", hint), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, redisRetryMax)
	}
}

// redisTrouble says, for an error of a first ping, what is probably wrong
// and what to check, and whether waiting could cure it (lasting: it
// cannot).
func redisTrouble(err error) (hint string, lasting bool) {
	var dns *net.DNSError
	var ne net.Error
	var cert *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"),
		strings.Contains(msg, "invalid username-password"):
		return "Redis refused the credentials: check the user and password in REDIS_URL (redis://user:password@host:port/db)", true
	case errors.As(err, &cert), errors.As(err, &unknownAuthority), strings.Contains(msg, "tls: "):
		return "the TLS handshake failed: check rediss:// against what the server speaks, and its certificate", true
	case strings.Contains(msg, "LOADING"):
		return "Redis is loading its data set from disk", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: is Redis running, and are REDIS_URL's host and port right?", false
	case errors.As(err, &dns):
		return "the host name does not resolve: check REDIS_URL's host (with docker compose, the Redis service's name)", false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		strings.Contains(msg, "can't parse"), strings.Contains(msg, "redis: invalid"):
		return "the server there hung up or did not answer as Redis does: is REDIS_URL's port a Redis one, and does the server want TLS (rediss://)?", false
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer in time: a firewall, or a host that is down or unreachable", false
	}
	return "check REDIS_URL and that Redis is running", false
}

// silentRedisLogger drops go-redis's log lines while connectRedis speaks
// for it.
type silentRedisLogger struct{}

func (silentRedisLogger) Printf(context.Context, string, ...any) {}
