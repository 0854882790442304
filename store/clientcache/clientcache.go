// Package clientcache wraps a store.Store with a short-lived in-process
// cache of OAuth clients. Every token request authenticates its client;
// without the cache that is a store round trip on top of the grant's own
// (docs/performance.md: one Redis round trip per refresh). Clients change
// rarely and only through the admin CLI, so each replica may serve a
// client record up to TTL old. A deletion or an update reaches every
// replica's cache at once through the revocation events (serve calls
// Forget for each; docs/design.md, "Revocation events"); TTL bounds it
// should the event log be unreachable. Unknown client ids are not cached,
// so the cache holds at most the registered clients.
//
// Store writes out every method of store.Store (no embedding), and
// effects lists what each does to the cache, so a method added to
// store.Store does not compile here until it is decided whether it
// changes a client.
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
	next store.Store
	ttl  time.Duration
	now  func() time.Time

	mu      sync.RWMutex
	entries map[string]entry
	group   singleflight.Group
}

type entry struct {
	client  store.Client
	expires time.Time
}

var _ store.Store = (*Store)(nil)

// Wrap returns st with client lookups cached for ttl. A ttl ≤ 0 caches
// nothing (CLIENT_CACHE_TTL=0): every lookup reads st.
func Wrap(st store.Store, ttl time.Duration) *Store {
	return &Store{next: st, ttl: ttl, now: time.Now, entries: make(map[string]entry)}
}

// What each store.Store method does to the cache; every method is listed
// (a test checks it against store.Store's method set).
const (
	caches  = "caches"  // reads through the cache
	forgets = "forgets" // drops the client from the cache, then passes the call on
	passes  = "passes"  // passes the call on: it changes no client
)

var effects = map[string]string{
	"Client":       caches,
	"UpdateClient": forgets,
	"DeleteClient": forgets,
	"CreateClient": passes, // an unknown id is never cached: nothing to drop
	"ListClients":  passes,
	// Users and sessions are not cached.
	"CreateUser": passes, "User": passes, "UserByName": passes, "ListUsers": passes, "UpdateUser": passes,
	"SetUserDisabled": passes, "DeleteUser": passes,
	"CreateSession": passes, "Rotate": passes, "Logout": passes, "Session": passes, "ListSessions": passes,
	"RevokeSession": passes, "RevokeUserSessions": passes, "UseProof": passes,
	"Ping": passes, "Close": passes,
}

// Client returns the cached client, or loads it (one load per id at a time).
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	if s.ttl <= 0 {
		return s.next.Client(ctx, id)
	}
	now := s.now()
	s.mu.RLock()
	e, ok := s.entries[id]
	s.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.client, nil
	}
	v, err, _ := s.group.Do(id, func() (any, error) {
		c, err := s.next.Client(ctx, id)
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
	return s.next.UpdateClient(ctx, c)
}

// DeleteClient deletes the client and drops it from this replica's cache.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	s.forget(id)
	return s.next.DeleteClient(ctx, id)
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

// The methods that change no client pass through.

func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.next.CreateClient(ctx, c)
}
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	return s.next.ListClients(ctx)
}
func (s *Store) CreateUser(ctx context.Context, u store.User) error { return s.next.CreateUser(ctx, u) }
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	return s.next.User(ctx, id)
}
func (s *Store) UserByName(ctx context.Context, username string) (store.User, error) {
	return s.next.UserByName(ctx, username)
}
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) { return s.next.ListUsers(ctx) }
func (s *Store) UpdateUser(ctx context.Context, u store.User) error  { return s.next.UpdateUser(ctx, u) }
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error {
	return s.next.SetUserDisabled(ctx, id, disabled, now)
}
func (s *Store) DeleteUser(ctx context.Context, id string) error { return s.next.DeleteUser(ctx, id) }
func (s *Store) CreateSession(ctx context.Context, n store.NewSession) ([]string, error) {
	return s.next.CreateSession(ctx, n)
}
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	return s.next.Rotate(ctx, r)
}
func (s *Store) Logout(ctx context.Context, l store.Logout) (store.Session, error) {
	return s.next.Logout(ctx, l)
}
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	return s.next.Session(ctx, userID, sessionID)
}
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	return s.next.ListSessions(ctx, userID, now)
}
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error {
	return s.next.RevokeSession(ctx, userID, sessionID, reason, now)
}
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) error {
	return s.next.RevokeUserSessions(ctx, userID, except, reason, now)
}
func (s *Store) UseProof(ctx context.Context, p store.Proof, req store.RequestID) error {
	return s.next.UseProof(ctx, p, req)
}
func (s *Store) Ping(ctx context.Context) error { return s.next.Ping(ctx) }
func (s *Store) Close() error                   { return s.next.Close() }
