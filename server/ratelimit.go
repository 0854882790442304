package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/store"
)

// LoginLimiter is brute-force protection for the password grant
// (implemented by package ratelimit, in Redis and in memory). The server
// consults it after the client is authenticated — so an unauthenticated
// caller still gets invalid_client — and before any password work.
type LoginLimiter interface {
	// Attempt counts one password attempt for the account (the username,
	// whether or not it exists; the limiter ignores its case) from the
	// client address ip. It
	// returns 0 when the attempt may go ahead; otherwise how long the
	// caller must wait and which limit ("ip" or "account") refused it.
	Attempt(ctx context.Context, account, ip string) (wait time.Duration, limit string, err error)
	// Succeeded tells the limiter the account's password was right from
	// ip, so earlier failures from there stop counting and the address is
	// known to the account (it then skips the account-wide ceiling).
	Succeeded(ctx context.Context, account, ip string) error
}

// errSlowDown is the error code of a rate-limited sign-in: "slow_down" is
// registered for the token endpoint in the IANA OAuth Extensions Error
// Registry (RFC 8628 §3.5), and says what the client must do; the 429
// status and Retry-After say for how long.
var errSlowDown = errors.New("slow_down")

// limitLogin asks the limiter whether this password attempt may go ahead.
func (s *Server) limitLogin(r *http.Request, c store.Client, username string) error {
	if s.o.LoginLimiter == nil {
		return nil
	}
	ctx := r.Context()
	wait, limit, err := s.o.LoginLimiter.Attempt(ctx, username, clientIP(r))
	if err != nil {
		return storeErr(ctx, err)
	}
	if wait <= 0 {
		return nil
	}
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	// The account is named only if it exists (accountAttrs); the lookup
	// costs one store read, as the limiter's own check does.
	u, err := s.o.Store.UserByName(ctx, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeErr(ctx, err)
	}
	s.audit(ctx, "signin.rate_limited", append(accountAttrs(u), slog.String("client_id", c.ID),
		slog.String("ip", clientIP(r)), slog.String("limit", limit), slog.Duration("retry_after", wait))...)
	return tooManyAttempts(wait, limit)
}

// limitSignup applies the login limits to self-registration, which spends
// an argon2id hash like a sign-in: the per-address budget is shared with
// sign-in, and the name has a budget of its own ("signup <name>": a space
// never occurs in a username, so it cannot collide with an account).
func (s *Server) limitSignup(r *http.Request, username string) error {
	if s.o.LoginLimiter == nil {
		return nil
	}
	ctx := r.Context()
	wait, limit, err := s.o.LoginLimiter.Attempt(ctx, "signup "+username, clientIP(r))
	if err != nil {
		return storeErr(ctx, err)
	}
	if wait <= 0 {
		return nil
	}
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	s.audit(ctx, "signup.rate_limited", slog.String("username", username), slog.String("ip", clientIP(r)),
		slog.String("limit", limit), slog.Duration("retry_after", wait))
	e := tooManyAttempts(wait, limit)
	e.desc = strings.Replace(e.desc, "sign-in attempts", "sign-up attempts", 1)
	return e
}

// loginSucceeded tells the limiter about a correct password from ip. A
// failure to do so is logged, not fatal: the sign-in stands.
func (s *Server) loginSucceeded(ctx context.Context, username, ip string) {
	if s.o.LoginLimiter == nil {
		return
	}
	if err := s.o.LoginLimiter.Succeeded(ctx, username, ip); err != nil {
		s.o.Logger.LogAttrs(ctx, slog.LevelWarn, "could not reset the sign-in rate limit",
			slog.String("request_id", requestID(ctx)), slog.String("error", err.Error()))
	}
}

// tooManyAttempts is the 429 answer, with Retry-After in whole seconds
// (rounded up, at least 1).
func tooManyAttempts(wait time.Duration, limit string) *oauthError {
	desc := "too many sign-in attempts for this account; retry later"
	switch limit {
	case "ip":
		desc = "too many sign-in attempts from this address; retry later"
	case "account_ip":
		desc = "too many sign-in attempts for this account from this address; retry later"
	}
	e := newError(errSlowDown, desc)
	e.status = http.StatusTooManyRequests
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	e.header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	return e
}
