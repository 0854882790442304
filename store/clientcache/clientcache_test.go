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

func TestCachesForTTL(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	defer mem.Close()
	if err := mem.CreateClient(ctx, store.Client{ID: "web", Public: true, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	inner := &counting{Store: mem}
	c := Wrap(inner, time.Minute).(*Store)
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
	if Wrap(mem, 0) != store.Store(mem) {
		t.Fatal("ttl 0 should return the store unchanged")
	}
}
