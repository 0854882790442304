package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the buckets a Memory limiter keeps per limit, and
// the known addresses it remembers.
const DefaultMaxKeys = 65536

// Memory keeps the buckets in this process (for the embedded store). At
// most MaxKeys buckets per limit are kept: when full, buckets that have
// refilled (and so equal a new one) are dropped first, then arbitrary ones.
// Known addresses are bounded the same way (expired ones first).
type Memory struct {
	rules
	m *memoryBackend
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
	m := &memoryBackend{
		now: o.Now, max: o.MaxKeys,
		buckets: map[string]*buckets{
			"ip":         newBuckets(limits.PerIP, o.MaxKeys),
			"account_ip": newBuckets(limits.PerAccountIP, o.MaxKeys),
			"account":    newBuckets(limits.PerAccount, o.MaxKeys),
		},
		knownUntil: map[string]time.Time{},
	}
	return &Memory{rules: rules{limits: limits, b: m}, m: m}
}

// Attempt counts one sign-in attempt from ip for account; see Redis.Attempt.
func (l *Memory) Attempt(ctx context.Context, account, ip string) (time.Duration, string, error) {
	return l.attempt(ctx, account, ip)
}

// Succeeded records a correct password; see Redis.Succeeded.
func (l *Memory) Succeeded(ctx context.Context, account, ip string) error {
	return l.succeeded(ctx, account, ip)
}

// Clear empties the account's ceiling and its buckets at ips; see
// Redis.Clear.
func (l *Memory) Clear(ctx context.Context, account string, ips ...string) error {
	return l.clear(ctx, account, ips...)
}

// Len returns how many buckets the limiter holds (for tests).
func (l *Memory) Len() int {
	n := 0
	for _, b := range l.m.buckets {
		n += b.len()
	}
	return n
}

type memoryBackend struct {
	now     func() time.Time
	max     int
	buckets map[string]*buckets // by kind

	mu         sync.Mutex
	knownUntil map[string]time.Time
}

func (m *memoryBackend) take(_ context.Context, kind, key string, _ Rate) (time.Duration, error) {
	return m.buckets[kind].take(key, m.now()), nil
}

func (m *memoryBackend) reset(_ context.Context, kind, key string) error {
	m.buckets[kind].reset(key)
	return nil
}

func (m *memoryBackend) known(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.knownUntil[key]
	return ok && m.now().Before(until), nil
}

func (m *memoryBackend) remember(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if _, ok := m.knownUntil[key]; !ok && len(m.knownUntil) >= m.max {
		for k, until := range m.knownUntil {
			if !now.Before(until) {
				delete(m.knownUntil, k)
			}
		}
		for k := range m.knownUntil {
			if len(m.knownUntil) < m.max-m.max/10 {
				break
			}
			delete(m.knownUntil, k)
		}
	}
	m.knownUntil[key] = now.Add(ttl)
	return nil
}

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
