package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis keeps the buckets in Redis, so every replica shares them. Its keys
// are "<prefix>rate:login:ip:<address>" and
// "<prefix>rate:login:account:<hash>", under the store's key prefix like
// every other key of tokend (so a Redis ACL limited to the prefix works);
// each expires when its bucket is full again.
type Redis struct {
	lim    *redis_rate.Limiter
	prefix string
	limits Limits
}

// NewRedis returns a limiter on rdb. prefix is the store's key prefix
// (REDIS_KEY_PREFIX).
func NewRedis(rdb redis.UniversalClient, prefix string, limits Limits) *Redis {
	return &Redis{lim: redis_rate.NewLimiter(unprefixed{rdb}), prefix: prefix + "rate:", limits: limits}
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

func gcra(r Rate) redis_rate.Limit {
	return redis_rate.Limit{Rate: r.N, Burst: r.N, Period: r.Period}
}

// Attempt counts one sign-in attempt from ip for account. It returns 0 when
// the attempt may go ahead, else how long to wait and which limit refused.
// An attempt refused by the IP limit is not counted against the account.
func (l *Redis) Attempt(ctx context.Context, account, ip string) (time.Duration, string, error) {
	if l.limits.PerIP.enabled() {
		res, err := l.lim.Allow(ctx, l.prefix+"login:ip:"+ipKey(ip), gcra(l.limits.PerIP))
		if err != nil {
			return 0, "", fmt.Errorf("ratelimit: ip: %w", err)
		}
		if res.Allowed == 0 {
			return roundUp(res.RetryAfter), LimitIP, nil
		}
	}
	if l.limits.PerAccount.enabled() {
		res, err := l.lim.Allow(ctx, l.prefix+"login:account:"+accountKey(account), gcra(l.limits.PerAccount))
		if err != nil {
			return 0, "", fmt.Errorf("ratelimit: account: %w", err)
		}
		if res.Allowed == 0 {
			return roundUp(res.RetryAfter), LimitAccount, nil
		}
	}
	return 0, "", nil
}

// Succeeded clears the account's bucket after a correct password.
func (l *Redis) Succeeded(ctx context.Context, account string) error {
	if !l.limits.PerAccount.enabled() {
		return nil
	}
	if err := l.lim.Reset(ctx, l.prefix+"login:account:"+accountKey(account)); err != nil {
		return fmt.Errorf("ratelimit: reset account: %w", err)
	}
	return nil
}
