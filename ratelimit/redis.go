package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis keeps the buckets in Redis, so every replica shares them. Its keys
// are "<prefix>rate:login:<kind>:<key>" for the buckets (kind is ip,
// account_ip or account), each expiring when its bucket is full again, and
// "<prefix>rate:login:known:<account hash>:<ip>" for known addresses,
// expiring after Limits.KnownFor — all under the store's key prefix like
// every other key of tokend (so a Redis ACL limited to the prefix works).
type Redis struct {
	rules
}

// NewRedis returns a limiter on rdb. prefix is the store's key prefix
// (REDIS_KEY_PREFIX).
func NewRedis(rdb redis.UniversalClient, prefix string, limits Limits) *Redis {
	return &Redis{rules{limits: limits, b: &redisBackend{rdb: rdb, lim: redis_rate.NewLimiter(unprefixed{rdb}), prefix: prefix + "rate:"}}}
}

// redisRatePrefix is what redis_rate puts before every key it is given;
// it cannot be configured.
const redisRatePrefix = "rate:"

// unprefixed takes redis_rate's fixed "rate:" off the keys of the commands
// it sends (its scripts and DEL), so that the keys start with the prefix
// given to Attempt: tokend's REDIS_KEY_PREFIX.
type unprefixed struct{ redis.UniversalClient }

func strip(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, redisRatePrefix)
	}
	return out
}

func (u unprefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.Eval(ctx, script, strip(keys), args...)
}

func (u unprefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalSha(ctx, sha1, strip(keys), args...)
}

func (u unprefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalRO(ctx, script, strip(keys), args...)
}

func (u unprefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalShaRO(ctx, sha1, strip(keys), args...)
}

func (u unprefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return u.UniversalClient.Del(ctx, strip(keys)...)
}

// Attempt counts one sign-in attempt from ip for account. It returns 0 when
// the attempt may go ahead, else how long to wait and which limit refused.
func (l *Redis) Attempt(ctx context.Context, account, ip string) (time.Duration, string, error) {
	return l.attempt(ctx, account, ip)
}

// Succeeded records a correct password for account from ip: it clears the
// account's bucket for the address and makes the address known.
func (l *Redis) Succeeded(ctx context.Context, account, ip string) error {
	return l.succeeded(ctx, account, ip)
}

// Clear empties the account's ceiling (Limits.PerAccount) and, for each
// of ips, the account's bucket at that address (Limits.PerAccountIP): an
// administrator lets an owner the limits hold back sign in again. The
// per-address limit (Limits.PerIP) covers every account and is left as it
// is.
func (l *Redis) Clear(ctx context.Context, account string, ips ...string) error {
	return l.clear(ctx, account, ips...)
}

type redisBackend struct {
	rdb    redis.UniversalClient
	lim    *redis_rate.Limiter
	prefix string // REDIS_KEY_PREFIX + "rate:"
}

func (b *redisBackend) take(ctx context.Context, kind, key string, r Rate) (time.Duration, error) {
	res, err := b.lim.Allow(ctx, b.prefix+"login:"+kind+":"+key, redis_rate.Limit{Rate: r.N, Burst: r.N, Period: r.Period})
	if err != nil {
		return 0, fmt.Errorf("ratelimit: %s: %w", kind, err)
	}
	if res.Allowed == 0 {
		return roundUp(res.RetryAfter), nil
	}
	return 0, nil
}

func (b *redisBackend) reset(ctx context.Context, kind, key string) error {
	if err := b.lim.Reset(ctx, b.prefix+"login:"+kind+":"+key); err != nil {
		return fmt.Errorf("ratelimit: reset %s: %w", kind, err)
	}
	return nil
}

func (b *redisBackend) knownKey(key string) string { return b.prefix + "login:known:" + key }

func (b *redisBackend) known(ctx context.Context, key string) (bool, error) {
	err := b.rdb.Get(ctx, b.knownKey(key)).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ratelimit: known address: %w", err)
	}
	return true, nil
}

func (b *redisBackend) remember(ctx context.Context, key string, ttl time.Duration) error {
	if err := b.rdb.Set(ctx, b.knownKey(key), "1", ttl).Err(); err != nil {
		return fmt.Errorf("ratelimit: remember address: %w", err)
	}
	return nil
}
