package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the buckets a Memory limiter keeps per limit.
const DefaultMaxKeys = 65536

// Memory keeps the buckets in this process (for the embedded store). At
// most MaxKeys buckets per limit are kept: when full, buckets that have
// refilled (and so equal a new one) are dropped first, then arbitrary ones.
type Memory struct {
	limits      Limits
	now         func() time.Time
	ip, account *buckets
}

// MemoryOptions tune a Memory limiter.
type MemoryOptions struct {
	MaxKeys int              // buckets kept per limit [DefaultMaxKeys]
	Now     func() time.Time // the clock [time.Now]
}

// NewMemory returns an in-process limiter.
func NewMemory(limits Limits, o MemoryOptions) *Memory {
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Memory{
		limits: limits, now: o.Now,
		ip:      newBuckets(limits.PerIP, o.MaxKeys),
		account: newBuckets(limits.PerAccount, o.MaxKeys),
	}
}

// Attempt counts one sign-in attempt from ip for account; see Redis.Attempt.
func (l *Memory) Attempt(_ context.Context, account, ip string) (time.Duration, string, error) {
	now := l.now()
	if l.limits.PerIP.enabled() {
		if d := l.ip.take(ipKey(ip), now); d > 0 {
			return roundUp(d), LimitIP, nil
		}
	}
	if l.limits.PerAccount.enabled() {
		if d := l.account.take(accountKey(account), now); d > 0 {
			return roundUp(d), LimitAccount, nil
		}
	}
	return 0, "", nil
}

// Succeeded clears the account's bucket after a correct password.
func (l *Memory) Succeeded(_ context.Context, account string) error {
	if l.limits.PerAccount.enabled() {
		l.account.reset(accountKey(account))
	}
	return nil
}

// Len returns how many buckets the limiter holds (for tests).
func (l *Memory) Len() int { return l.ip.len() + l.account.len() }

type buckets struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newBuckets(r Rate, max int) *buckets {
	b := &buckets{burst: r.N, max: max, m: map[string]*rate.Limiter{}}
	if r.enabled() {
		b.limit = rate.Limit(float64(r.N) / r.Period.Seconds())
	}
	return b
}

// take spends one token of key's bucket; it returns 0, or how long until a
// token is available (and then spends nothing).
func (b *buckets) take(key string, now time.Time) time.Duration {
	b.mu.Lock()
	lim := b.m[key]
	if lim == nil {
		if len(b.m) >= b.max {
			b.shrink(now)
		}
		lim = rate.NewLimiter(b.limit, b.burst)
		b.m[key] = lim
	}
	b.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// shrink drops full buckets, then arbitrary ones, down to 90% of max.
// Called with mu held.
func (b *buckets) shrink(now time.Time) {
	for k, lim := range b.m {
		if lim.TokensAt(now) >= float64(b.burst) {
			delete(b.m, k)
		}
	}
	for k := range b.m {
		if len(b.m) < b.max-b.max/10 {
			break
		}
		delete(b.m, k)
	}
}

func (b *buckets) reset(key string) {
	b.mu.Lock()
	delete(b.m, key)
	b.mu.Unlock()
}

func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
