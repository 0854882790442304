// Package clientcache wraps a store.Store with a short-lived in-process
// cache of OAuth clients. Every token request authenticates its client;
// without the cache that is a store round trip on top of the grant's own
// (docs/performance.md: one Redis round trip per refresh). Clients change
// rarely and only through the admin CLI, so each replica may serve a
// client record up to TTL old. A deletion or an update reaches every
// replica's cache at once through the revocation events (serve calls
// Forget for each; docs/design.md, "Revocation events"); TTL bounds it
// should the event log be unreachable. Unknown client ids are not cached, so the cache
// holds at most the registered clients.
package clientcache

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokend/tokend/store"
)

// Store is a store.Store whose Client lookups are cached for TTL.
type Store struct {
	store.Store
	ttl time.Duration
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]entry
	group   singleflight.Group
}

type entry struct {
	client  store.Client
	expires time.Time
}

// Wrap returns st with client lookups cached for ttl. A ttl ≤ 0 returns st
// unchanged.
func Wrap(st store.Store, ttl time.Duration) store.Store {
	if ttl <= 0 {
		return st
	}
	return &Store{Store: st, ttl: ttl, now: time.Now, entries: make(map[string]entry)}
}

// Client returns the cached client, or loads it (one load per id at a time).
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	now := s.now()
	s.mu.RLock()
	e, ok := s.entries[id]
	s.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.client, nil
	}
	v, err, _ := s.group.Do(id, func() (any, error) {
		c, err := s.Store.Client(ctx, id)
		if err != nil {
			if ok && errors.Is(err, store.ErrNotFound) {
				s.forget(id)
			}
			return store.Client{}, err
		}
		s.mu.Lock()
		s.entries[id] = entry{client: c, expires: s.now().Add(s.ttl)}
		s.mu.Unlock()
		return c, nil
	})
	return v.(store.Client), err
}

// UpdateClient updates the client and drops it from this replica's cache
// (other replicas drop it when they read the event, or after TTL).
func (s *Store) UpdateClient(ctx context.Context, c store.Client) error {
	s.forget(c.ID)
	return s.Store.UpdateClient(ctx, c)
}

// DeleteClient deletes the client and drops it from this replica's cache.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	s.forget(id)
	return s.Store.DeleteClient(ctx, id)
}

// Forget drops id from the cache, so the next lookup reads the store. The
// server calls it for every client-deleted and client-updated event
// (package events), so a client deleted or changed anywhere is seen as
// such on every replica within the feed's delay rather than TTL.
func (s *Store) Forget(id string) { s.forget(id) }

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.entries, id)
	s.mu.Unlock()
}
