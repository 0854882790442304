package clientcache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/storetest"
)

// The cache is a store.Store like any other: the conformance suite holds
// (with a TTL so short that no subtest sees a stale client).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st := memstore.New()
		t.Cleanup(func() { st.Close() })
		return Wrap(st, time.Nanosecond)
	})
}

type counting struct {
	store.Store
	loads atomic.Int64
}

func (c *counting) Client(ctx context.Context, id string) (store.Client, error) {
	c.loads.Add(1)
	time.Sleep(time.Millisecond) // widen the window for concurrent misses
	return c.Store.Client(ctx, id)
}

// webStore is an embedded store holding the public client "web", its
// Client lookups counted.
func webStore(t *testing.T) *counting {
	t.Helper()
	mem := memstore.New()
	t.Cleanup(func() { mem.Close() })
	if err := mem.CreateClient(context.Background(), store.Client{ID: "web", Public: true, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return &counting{Store: mem}
}

func TestCachesForTTL(t *testing.T) {
	ctx := context.Background()
	inner := webStore(t)
	c := Wrap(inner, time.Minute)
	clock := time.Now()
	c.now = func() time.Time { return clock }

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Client(ctx, "web"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := inner.loads.Load(); n != 1 {
		t.Fatalf("20 concurrent lookups loaded %d times, want 1", n)
	}
	clock = clock.Add(2 * time.Minute)
	if _, err := c.Client(ctx, "web"); err != nil || inner.loads.Load() != 2 {
		t.Fatalf("expired entry not reloaded: %v, %d loads", err, inner.loads.Load())
	}
	// Unknown ids are not cached.
	for i := 0; i < 3; i++ {
		if _, err := c.Client(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
	}
	if inner.loads.Load() != 5 {
		t.Fatalf("unknown ids cached: %d loads", inner.loads.Load())
	}
	// Deleting through the cache takes effect at once on this replica.
	if err := c.DeleteClient(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted client still served: %v", err)
	}
}

// CLIENT_CACHE_TTL=0 caches nothing: every lookup reads the store.
func TestTTLZeroCachesNothing(t *testing.T) {
	ctx := context.Background()
	inner := webStore(t)
	c := Wrap(inner, 0)
	for i := 0; i < 3; i++ {
		if _, err := c.Client(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.loads.Load(); n != 3 {
		t.Fatalf("3 lookups with ttl 0 loaded %d times, want 3", n)
	}
}

// Every store.Store method is in the effects table; the methods that pass
// leave a cached client cached, the ones that forget drop it: a method
// added to store.Store fails here until the cache says what it does.
func TestEveryMethodDecided(t *testing.T) {
	storetest.CheckMethodTable(t, "clientcache's effects table", effects)
	ctx := context.Background()
	inner := webStore(t)
	c := Wrap(inner, time.Minute)
	lookup := func(wantLoads int64) {
		t.Helper()
		if _, err := c.Client(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		if n := inner.loads.Load(); n != wantLoads {
			t.Fatalf("%d loads, want %d", n, wantLoads)
		}
	}
	lookup(1)
	for _, m := range storetest.Methods() {
		if effects[m] == passes && m != "Close" {
			_ = storetest.Call(ctx, c, m) // zero arguments: an answer or a refusal
		}
	}
	lookup(1) // still cached
	for _, f := range []struct {
		m      string
		forget func() error
	}{
		{"UpdateClient", func() error { return c.UpdateClient(ctx, store.Client{ID: "web", Grants: []string{"password"}}) }},
		{"DeleteClient", func() error { return c.DeleteClient(ctx, "web") }}, // last: the client is gone
	} {
		m, forget := f.m, f.forget
		if effects[m] != forgets {
			t.Fatalf("effects[%s] = %q, want %q", m, effects[m], forgets)
		}
		lookup(inner.loads.Load()) // cache it
		if err := forget(); err != nil {
			t.Fatal(err)
		}
		before := inner.loads.Load()
		_, _ = c.Client(ctx, "web")
		if inner.loads.Load() != before+1 {
			t.Fatalf("%s left the client cached", m)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
