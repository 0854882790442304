// Package memstore is tokend's embedded, in-process store.Store for
// development: everything is lost when the process exits. It behaves as
// store/redisstore does — same errors, same tombstones, same used-token
// memory, times kept to the millisecond — and both pass the conformance
// suite in store/storetest.
//
// A session record disappears a tombstone grace (one hour) after its
// absolute expiry, by the wall clock, as a Redis key with PEXPIREAT would:
// lazily when touched, and by a sweeper goroutine that Close stops.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

const sweepEvery = time.Minute

var errClosed = errors.New("memstore: store is closed")

// Store is an in-memory store.Store, safe for concurrent use.
type Store struct {
	clock func() time.Time // wall clock for record expiry; tests may replace it

	mu       sync.Mutex
	closed   bool
	users    map[string]store.User // by id
	names    map[string]string     // lower-cased username → id
	looks    map[string]string     // credential.Skeleton(username) → id
	clients  map[string]store.Client
	sessions map[string]map[string]*session // user id → session id → record
	proofs   map[proofKey]recorded          // DPoP proof ids recorded

	stop chan struct{}
	done chan struct{}
}

// MaxProofs bounds the DPoP proof ids the store remembers at once. A
// proof is recorded until its Expiry (a minute or so); when the bound is
// reached the expired ones are dropped, and if none are, a new proof is
// refused with an error (the server answers 503) rather than accepted
// unchecked.
const MaxProofs = 100_000

var errProofsFull = errors.New("memstore: too many DPoP proofs in their replay window")

// proofKey is a recorded proof id, kept per user (sign-ins and rotations)
// or under "" (UseProof), as the Redis store keeps them.
type proofKey struct{ userID, id string }

// recorded is who recorded a proof id, and until when.
type recorded struct {
	by    store.RequestID
	until time.Time
}

// session is a session record.
type session struct {
	s      store.Session
	expire time.Time // the record's own expiry: ExpiresAt + store.TombstoneGrace
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store with its sweeper running; Close stops it.
func New() *Store { return newStore(time.Now, sweepEvery) }

// newStore returns a Store on a clock, sweeping every interval.
func newStore(clock func() time.Time, every time.Duration) *Store {
	s := &Store{
		clock:    clock,
		users:    map[string]store.User{},
		names:    map[string]string{},
		looks:    map[string]string{},
		clients:  map[string]store.Client{},
		sessions: map[string]map[string]*session{},
		proofs:   map[proofKey]recorded{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.sweep(every)
	return s
}

// sweep deletes expired session records every interval until Close.
func (s *Store) sweep(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.expire()
			s.mu.Unlock()
		}
	}
}

// expire deletes every expired session record. Called with mu held.
func (s *Store) expire() {
	now := s.clock()
	for uid, m := range s.sessions {
		for sid, x := range m {
			if !now.Before(x.expire) {
				delete(m, sid)
			}
		}
		if len(m) == 0 {
			delete(s.sessions, uid)
		}
	}
	for k, r := range s.proofs {
		if !now.Before(r.until) {
			delete(s.proofs, k)
		}
	}
}

// recordedBy returns who recorded the proof id under userID ("" for
// UseProof), or nil. Called with mu held.
func (s *Store) recordedBy(userID string, p *store.Proof) *store.RequestID {
	if p == nil {
		return nil
	}
	r, ok := s.proofs[proofKey{userID, p.ID}]
	if !ok || !s.clock().Before(r.until) {
		return nil
	}
	return &r.by
}

// recordProof remembers the proof id until its expiry. Called with mu
// held, after recordedBy found no other request's record.
func (s *Store) recordProof(userID string, p *store.Proof, by store.RequestID) error {
	k := proofKey{userID, p.ID}
	if _, ok := s.proofs[k]; !ok && len(s.proofs) >= MaxProofs {
		s.expire()
		if len(s.proofs) >= MaxProofs {
			return errProofsFull
		}
	}
	s.proofs[k] = recorded{by: by, until: fields.Round(p.Expiry)}
	return nil
}

// lock takes mu, or returns errClosed (without holding mu) after Close.
func (s *Store) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Close stops the sweeper and makes every later call fail. It is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}

// Users.

// CreateUser stores a new user; ErrConflict if the id or the username
// (case-insensitively) is taken.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("memstore: create user: empty id")
	}
	roles, err := fields.JoinRoles(u.Roles)
	if err != nil {
		return fmt.Errorf("memstore: create user: %w", err)
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	name := strings.ToLower(u.Username)
	if _, ok := s.users[u.ID]; ok {
		return store.ErrConflict
	}
	if _, ok := s.names[name]; ok {
		return store.ErrConflict
	}
	look := credential.Skeleton(u.Username)
	if _, ok := s.looks[look]; ok {
		return store.ErrLookAlike
	}
	u.Roles = fields.Words(roles)
	u.CreatedAt, u.UpdatedAt = fields.Round(u.CreatedAt), fields.Round(u.UpdatedAt)
	u.SessionsEnded, u.SessionsExempt, u.SessionsEndReason, u.LastSignIn = time.Time{}, "", "", time.Time{}
	s.users[u.ID] = u
	s.names[name] = u.ID
	s.looks[look] = u.ID
	return nil
}

// User returns the user with the id, or ErrNotFound.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	if err := s.lock(); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return copyUser(u), nil
}

// UserByName returns the user with the username, compared
// case-insensitively, or ErrNotFound.
func (s *Store) UserByName(ctx context.Context, username string) (store.User, error) {
	if err := s.lock(); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[s.names[strings.ToLower(username)]]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return copyUser(u), nil
}

// ListUsers returns every user, ordered by username.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, copyUser(u))
	}
	slices.SortFunc(out, func(a, b store.User) int {
		if c := strings.Compare(strings.ToLower(a.Username), strings.ToLower(b.Username)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// UpdateUser replaces the user's password hash and roles and sets
// UpdatedAt; the other fields are ignored. ErrNotFound if absent.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	roles, err := fields.JoinRoles(u.Roles)
	if err != nil {
		return fmt.Errorf("memstore: update user: %w", err)
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	cur, ok := s.users[u.ID]
	if !ok {
		return store.ErrNotFound
	}
	cur.PasswordHash = u.PasswordHash
	cur.Roles = fields.Words(roles)
	cur.UpdatedAt = fields.Round(u.UpdatedAt)
	s.users[u.ID] = cur
	return nil
}

// SetUserDisabled disables the user, ending every session (reason
// user_disabled) through SessionsEnded, or re-enables it; either way
// UpdatedAt = now.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	now = fields.Round(fields.NowOr(now))
	u.Disabled, u.UpdatedAt = disabled, now
	if disabled {
		store.EndSessions(&u, "", store.ReasonUserDisable, now)
	}
	s.users[id] = u
	return nil
}

// DeleteUser deletes the user and every session record it owns.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	delete(s.users, id)
	if name := strings.ToLower(u.Username); s.names[name] == id {
		delete(s.names, name)
	}
	if look := credential.Skeleton(u.Username); s.looks[look] == id {
		delete(s.looks, look)
	}
	delete(s.sessions, id)
	return nil
}

// Clients.

// CreateClient stores a new client, or returns ErrConflict.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return errors.New("memstore: create client: empty id")
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[c.ID]; ok {
		return store.ErrConflict
	}
	c.SecretHash = bytesOrNil(c.SecretHash)
	c.Grants = fields.Words(strings.Join(c.Grants, " "))
	c.Scopes = fields.Words(strings.Join(c.Scopes, " "))
	c.Audiences = fields.Words(strings.Join(c.Audiences, " "))
	c.CreatedAt = fields.Round(c.CreatedAt)
	c.TokensNotBefore = fields.Round(c.TokensNotBefore)
	s.clients[c.ID] = c
	return nil
}

// Client returns the client with the id, or ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	if err := s.lock(); err != nil {
		return store.Client{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return copyClient(c), nil
}

// ListClients returns every client, ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.Client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, copyClient(c))
	}
	slices.SortFunc(out, func(a, b store.Client) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// UpdateClient replaces the client's secret hash, grants, scopes,
// audiences, RequireDPoP and TokensNotBefore, or returns ErrNotFound.
func (s *Store) UpdateClient(ctx context.Context, c store.Client) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	old, ok := s.clients[c.ID]
	if !ok {
		return store.ErrNotFound
	}
	old.SecretHash = bytesOrNil(c.SecretHash)
	old.Grants = fields.Words(strings.Join(c.Grants, " "))
	old.Scopes = fields.Words(strings.Join(c.Scopes, " "))
	old.Audiences = fields.Words(strings.Join(c.Audiences, " "))
	old.RequireDPoP = c.RequireDPoP
	old.TokensNotBefore = fields.Round(c.TokensNotBefore)
	s.clients[c.ID] = old
	return nil
}

// DeleteClient deletes the client, or returns ErrNotFound.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[id]; !ok {
		return store.ErrNotFound
	}
	delete(s.clients, id)
	return nil
}

// Sessions.

// session returns the live record (revoked and expired sessions included,
// until the record itself expires), or nil. Called with mu held.
func (s *Store) session(userID, sessionID string) *session {
	m := s.sessions[userID]
	x := m[sessionID]
	if x == nil {
		return nil
	}
	if !s.clock().Before(x.expire) {
		delete(m, sessionID)
		return nil
	}
	return x
}

// CreateSession stores a new session for an existing, enabled user
// (ErrUserInactive otherwise; ErrConflict if the session id is taken),
// then ends the user's least recently used active sessions beyond ns.Max
// and returns their ids. The user agent is cut to store.MaxUserAgent
// bytes.
func (s *Store) CreateSession(ctx context.Context, ns store.NewSession) ([]string, error) {
	x := ns.Session
	if x.UserID != "" && x.ID == "" {
		return nil, errors.New("memstore: create session: empty session id")
	}
	if err := ns.Proof.Check(); err != nil {
		return nil, err
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[x.UserID]
	if !ok || u.Disabled {
		return nil, store.ErrUserInactive
	}
	if s.session(x.UserID, x.ID) != nil {
		return nil, store.ErrConflict
	}
	created := fields.Round(x.CreatedAt)
	var jkt string
	if ns.Proof != nil {
		if s.recordedBy(x.UserID, ns.Proof) != nil {
			return nil, store.ErrProofReplayed
		}
		if err := s.recordProof(x.UserID, ns.Proof, store.RequestID{}); err != nil {
			return nil, err
		}
		jkt = ns.Proof.JKT
	}
	u.LastSignIn = created
	s.users[x.UserID] = u
	rec := &session{
		s: store.Session{
			ID:        x.ID,
			UserID:    x.UserID,
			ClientID:  x.ClientID,
			KeyID:     x.KeyID,
			JKT:       jkt,
			Scope:     x.Scope,
			UserAgent: store.TruncateUserAgent(x.UserAgent),
			IP:        x.IP,
			CreatedAt: created,
			UpdatedAt: created,
			ExpiresAt: fields.Round(x.ExpiresAt),
		},
	}
	rec.expire = rec.s.ExpiresAt.Add(store.TombstoneGrace)
	if !s.clock().Before(rec.expire) {
		return nil, nil // born expired, like a PEXPIREAT in the past
	}
	m := s.sessions[x.UserID]
	if m == nil {
		m = map[string]*session{}
		s.sessions[x.UserID] = m
	}
	// The cap: the user's other active sessions, least recently used
	// first (ties by id, as a Redis sorted set orders equal scores).
	var live []*session
	for sid := range m {
		if o := s.session(x.UserID, sid); o != nil && store.Effective(o.s, &u).Active(created) {
			live = append(live, o)
		}
	}
	m[x.ID] = rec
	limit := ns.Max
	if limit <= 0 {
		limit = store.DefaultMaxSessions
	}
	var evicted []string
	if over := len(live) + 1 - limit; over > 0 {
		slices.SortFunc(live, func(a, b *session) int {
			return cmp.Or(a.s.UpdatedAt.Compare(b.s.UpdatedAt), strings.Compare(a.s.ID, b.s.ID))
		})
		for _, o := range live[:min(over, len(live))] {
			o.revoke(store.ReasonEvicted, created)
			evicted = append(evicted, o.s.ID)
		}
	}
	return evicted, nil
}

// load returns the session and user records for the rule (nil where
// there are none). Called with mu held.
func (s *Store) load(userID, sessionID string) (*session, *store.Session, *store.User) {
	x := s.session(userID, sessionID)
	var sp *store.Session
	if x != nil {
		sp = &x.s
	}
	var up *store.User
	if u, ok := s.users[userID]; ok {
		up = &u
	}
	return x, sp, up
}

// Rotate applies the rotation rule, store.Decide, to the presented token.
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	if err := s.lock(); err != nil {
		return store.Rotated{}, err
	}
	defer s.mu.Unlock()
	if err := r.Proof.Check(); err != nil {
		return store.Rotated{}, err
	}
	r.Now = fields.Round(fields.NowOr(r.Now))
	x, sp, u := s.load(r.UserID, r.SessionID)
	v := store.Decide(sp, u, r, s.recordedBy(r.UserID, r.Proof))
	if v.RecordProof {
		if err := s.recordProof(r.UserID, r.Proof, r.RequestID); err != nil {
			return store.Rotated{}, err
		}
	}
	if x != nil {
		v.Apply(&x.s, r)
	}
	if v.Err != nil {
		return store.Rotated{}, v.Err
	}
	return store.Rotated{
		Session: x.s, Scope: store.NormalScope(r.Scope, x.s.Scope), Roles: slices.Clone(u.Roles), Outcome: v.Outcome,
	}, nil
}

// Logout classifies the presented token by store.Decide and ends what
// l.Scope asks (see store.Store.Logout).
func (s *Store) Logout(ctx context.Context, l store.Logout) (store.Session, error) {
	if err := s.lock(); err != nil {
		return store.Session{}, err
	}
	defer s.mu.Unlock()
	if err := l.Proof.Check(); err != nil {
		return store.Session{}, err
	}
	now := fields.Round(fields.NowOr(l.Now))
	x, sp, u := s.load(l.UserID, l.SessionID)
	r := store.Rotation{Presentation: l.Presentation}
	r.Now = now
	v := store.Decide(sp, u, r, s.recordedBy(l.UserID, l.Proof))
	if v.RecordProof {
		if err := s.recordProof(l.UserID, l.Proof, l.RequestID); err != nil {
			return store.Session{}, err
		}
	}
	if x != nil && v.Revoke != "" {
		v.Apply(&x.s, r)
	}
	if x == nil {
		return store.Session{}, v.Err
	}
	if v.Err == nil {
		switch l.Scope {
		case store.LogoutGlobal:
			store.EndSessions(u, "", store.ReasonLogout, now)
		case store.LogoutOthers:
			store.EndSessions(u, l.SessionID, store.ReasonLogout, now)
		default:
			x.revoke(store.ReasonLogout, now)
		}
		s.users[l.UserID] = *u
	}
	return store.Effective(x.s, u), v.Err
}

// Session returns the session whatever its state (see store.Effective),
// or ErrNotFound.
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	if err := s.lock(); err != nil {
		return store.Session{}, err
	}
	defer s.mu.Unlock()
	x, _, u := s.load(userID, sessionID)
	if x == nil {
		return store.Session{}, store.ErrNotFound
	}
	return store.Effective(x.s, u), nil
}

// ListSessions returns the user's sessions active at now, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now = fields.Round(fields.NowOr(now))
	out := []store.Session{}
	for sid := range s.sessions[userID] {
		if x, _, u := s.load(userID, sid); x != nil {
			if e := store.Effective(x.s, u); e.Active(now) {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b store.Session) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RevokeSession revokes one session. Revoking a revoked session succeeds
// and keeps the first time and reason; ErrNotFound if there is no record.
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	x, _, u := s.load(userID, sessionID)
	if x == nil {
		return store.ErrNotFound
	}
	if e := store.Effective(x.s, u); !e.RevokedAt.IsZero() {
		x.revoke(e.RevokeReason, e.RevokedAt) // record a lazy end as it reads
	}
	x.revoke(fields.ReasonOr(reason), fields.Round(fields.NowOr(now)))
	return nil
}

// RevokeUserSessions ends the user's sessions but `except` through the
// user's SessionsEnded time. A user that does not exist has none.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		return nil
	}
	store.EndSessions(&u, except, fields.ReasonOr(reason), fields.Round(fields.NowOr(now)))
	s.users[userID] = u
	return nil
}

// UseProof records a proof id for a request without a session, or
// returns ErrProofReplayed.
func (s *Store) UseProof(ctx context.Context, p store.Proof, req store.RequestID) error {
	if err := p.Check(); err != nil {
		return err
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if by := s.recordedBy("", &p); by != nil && (*by != req || req == store.RequestID{}) {
		return store.ErrProofReplayed
	}
	return s.recordProof("", &p, req)
}

// revoke marks the session revoked unless it already is.
func (x *session) revoke(reason string, now time.Time) {
	if x.s.RevokedAt.IsZero() {
		x.s.RevokedAt, x.s.RevokeReason = now, reason
	}
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}

func copyUser(u store.User) store.User {
	u.Roles = slices.Clone(u.Roles)
	return u
}

func copyClient(c store.Client) store.Client {
	c.SecretHash = slices.Clone(c.SecretHash)
	c.Grants = slices.Clone(c.Grants)
	c.Scopes = slices.Clone(c.Scopes)
	c.Audiences = slices.Clone(c.Audiences)
	return c
}
