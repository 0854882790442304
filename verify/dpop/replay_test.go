package dpop

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemoryReplayCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1767225600, 0)
	clock := func() time.Time { return now }
	c := newMemoryReplayCache(100, clock)
	seen := func(id string, until time.Time) bool {
		t.Helper()
		s, err := c.Seen(ctx, id, until)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if seen("a", now.Add(time.Minute)) || !seen("a", now.Add(time.Minute)) || seen("b", now.Add(time.Minute)) {
		t.Fatal("first and second sight")
	}
	// Past its until, an id is forgotten.
	now = now.Add(time.Minute)
	if seen("a", now.Add(time.Minute)) {
		t.Fatal("a remembered past its until")
	}
	if !seen("a", now.Add(time.Minute)) {
		t.Fatal("a recorded again")
	}

	// Full of live ids: refused, never forgotten early.
	small := newMemoryReplayCache(3, clock)
	for i := 0; i < 3; i++ {
		if s, err := small.Seen(ctx, fmt.Sprint(i), now.Add(time.Minute)); s || err != nil {
			t.Fatal(s, err)
		}
	}
	if _, err := small.Seen(ctx, "x", now.Add(time.Minute)); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("full: %v", err)
	}
	if s, err := small.Seen(ctx, "0", now.Add(time.Minute)); !s || err != nil {
		t.Fatalf("a full cache still knows its ids: %v %v", s, err)
	}
	now = now.Add(time.Minute)
	if s, err := small.Seen(ctx, "x", now.Add(time.Minute)); s || err != nil {
		t.Fatalf("room once ids expired: %v %v", s, err)
	}
	// Expired ids in shards no request touched do not make it full.
	sharded := newMemoryReplayCache(64, clock)
	shardOf := func(id string) uint64 { return maphash.String(sharded.seed, id) % uint64(len(sharded.shards)) }
	for i, n := 0, 0; n < 64; i++ {
		if id := fmt.Sprint(i); shardOf(id) != shardOf("new") {
			if s, err := sharded.Seen(ctx, id, now.Add(time.Second)); s || err != nil {
				t.Fatal(s, err)
			}
			n++
		}
	}
	if _, err := sharded.Seen(ctx, "new", now.Add(time.Second)); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("not full: %v", err)
	}
	now = now.Add(time.Second)
	if s, err := sharded.Seen(ctx, "new", now.Add(time.Second)); s || err != nil {
		t.Fatalf("expired ids elsewhere: %v %v", s, err)
	}
	if NewMemoryReplayCache(0).(*memoryReplayCache).max != DefaultReplayEntries {
		t.Fatal("default size")
	}
}

// Concurrent presentations of one proof: exactly one is first.
func TestMemoryReplayCacheConcurrent(t *testing.T) {
	c := NewMemoryReplayCache(10_000)
	until := time.Now().Add(time.Minute)
	for round := 0; round < 50; round++ {
		id := fmt.Sprint("proof-", round)
		var first atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 2*runtime.GOMAXPROCS(0)+2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seen, err := c.Seen(context.Background(), id, until)
				if err != nil {
					t.Error(err)
				}
				if !seen {
					first.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := first.Load(); n != 1 {
			t.Fatalf("round %d: %d presentations were first", round, n)
		}
	}
}

// The memory an id costs, for the docs: measured, not guessed.
func TestMemoryReplayCacheBytesPerEntry(t *testing.T) {
	const n = 50_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewMemoryReplayCache(n)
	until := time.Now().Add(time.Hour)
	for i := 0; i < n; i++ {
		id := replayID("jkt", "GET", "https://x/", fmt.Sprint(i))
		if _, err := c.Seen(context.Background(), id, until); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per id", per)
	if per > 250 {
		t.Errorf("%.0f bytes per id; docs/design.md says at most 250", per)
	}
	runtime.KeepAlive(c)
}
