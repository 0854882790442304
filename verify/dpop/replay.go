package dpop

import (
	"container/heap"
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// ReplayCache remembers the ids of proofs (Proof.ID) that were used, so
// that each is accepted once (RFC 9449 §11.1). Replicas of a service that
// share one (in Redis, say: SET id NX PXAT until) refuse a proof replayed
// at any of them; NewMemoryReplayCache is one for a single process.
type ReplayCache interface {
	// Seen records id until the time until and reports whether it was
	// recorded already (and not yet past its until). An error means the
	// cache could not answer: the proof must be refused.
	Seen(ctx context.Context, id string, until time.Time) (seen bool, err error)
}

// ErrReplayCacheFull: a memory replay cache holds its maximum of ids, none
// yet expired; the proof is refused rather than accepted unchecked.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// DefaultReplayEntries is the size of a memory replay cache when none is
// given: enough for about 1,400 DPoP requests a second with the default
// window of 70 s (DefaultMaxAge + DefaultSkew).
const DefaultReplayEntries = 100_000

// replayShards splits a memory replay cache so that concurrent requests
// rarely wait for each other.
const replayShards = 16

// NewMemoryReplayCache returns a ReplayCache held in memory, safe for
// concurrent use, of at most max ids (DefaultReplayEntries if max ≤ 0).
// Ids leave when their until passes. When it is full of ids not yet
// expired, Seen fails with ErrReplayCacheFull: size it for the peak rate
// of proofs times their window (MaxAge + Skew).
func NewMemoryReplayCache(max int) ReplayCache {
	return newMemoryReplayCache(max, time.Now)
}

func newMemoryReplayCache(max int, now func() time.Time) *memoryReplayCache {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	shards := replayShards
	if max < 4*shards {
		shards = 1
	}
	c := &memoryReplayCache{seed: maphash.MakeSeed(), now: now, max: int64(max), shards: make([]replayShard, shards)}
	for i := range c.shards {
		c.shards[i].ids = map[string]int64{}
	}
	return c
}

type memoryReplayCache struct {
	seed   maphash.Seed
	now    func() time.Time
	max    int64
	n      atomic.Int64 // ids held, in all shards
	shards []replayShard
}

type replayShard struct {
	mu  sync.Mutex
	ids map[string]int64 // id → until, Unix nanoseconds
	exp expiryHeap       // the same ids, soonest until first
}

func (c *memoryReplayCache) Seen(_ context.Context, id string, until time.Time) (bool, error) {
	s := &c.shards[maphash.String(c.seed, id)%uint64(len(c.shards))]
	now := c.now().UnixNano()
	seen, full := c.seen(s, id, until.UnixNano(), now)
	if full {
		// Other shards may hold expired ids no request has swept yet.
		for i := range c.shards {
			o := &c.shards[i]
			o.mu.Lock()
			c.expire(o, now)
			o.mu.Unlock()
		}
		if seen, full = c.seen(s, id, until.UnixNano(), now); full {
			return false, ErrReplayCacheFull
		}
	}
	return seen, nil
}

// seen is Seen in shard s, which it locks; full reports that the cache
// had no room for id.
func (c *memoryReplayCache) seen(s *replayShard, id string, until, now int64) (seen, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.expire(s, now)
	if _, ok := s.ids[id]; ok {
		return true, false
	}
	if c.n.Add(1) > c.max {
		c.n.Add(-1)
		return false, true
	}
	s.ids[id] = until
	heap.Push(&s.exp, expiry{id: id, until: until})
	return false, false
}

// expire forgets the ids of s past their until, s.mu held.
func (c *memoryReplayCache) expire(s *replayShard, now int64) {
	for len(s.exp) > 0 && s.exp[0].until <= now {
		delete(s.ids, heap.Pop(&s.exp).(expiry).id)
		c.n.Add(-1)
	}
}

// expiry is an id and its until; expiryHeap is a min-heap of them.
type expiry struct {
	id    string
	until int64
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
