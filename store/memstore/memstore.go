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
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/store"
)

// The constants shared with redisstore's defaults.
const (
	// UsedTokens is how many used refresh tokens a session remembers.
	UsedTokens = 32
	// TombstoneGrace is how long a session record outlives its expiry.
	TombstoneGrace = time.Hour

	fingerprint = 8
	sweepEvery  = time.Minute
)

var errClosed = errors.New("memstore: store is closed")

// Store is an in-memory store.Store, safe for concurrent use.
type Store struct {
	clock func() time.Time // wall clock for record expiry; tests may replace it

	mu       sync.Mutex
	closed   bool
	users    map[string]store.User // by id
	names    map[string]string     // lower-cased username → id
	clients  map[string]store.Client
	sessions map[string]map[string]*session // user id → session id → record

	stop chan struct{}
	done chan struct{}
}

// session is a session record.
type session struct {
	s      store.Session
	h      store.TokenHash
	used   []byte    // fingerprints of used tokens, newest last
	expire time.Time // the record's own expiry: ExpiresAt + TombstoneGrace
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
		clients:  map[string]store.Client{},
		sessions: map[string]map[string]*session{},
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
	u.Roles = words(strings.Join(u.Roles, " "))
	u.CreatedAt, u.UpdatedAt = msTime(u.CreatedAt), msTime(u.UpdatedAt)
	s.users[u.ID] = u
	s.names[name] = u.ID
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
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	cur, ok := s.users[u.ID]
	if !ok {
		return store.ErrNotFound
	}
	cur.PasswordHash = u.PasswordHash
	cur.Roles = words(strings.Join(u.Roles, " "))
	cur.UpdatedAt = msTime(u.UpdatedAt)
	s.users[u.ID] = cur
	return nil
}

// SetUserDisabled disables the user, revoking every active session
// (reason user_disabled), or re-enables it; either way UpdatedAt = now.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	now = msTime(nowOr(now))
	u.Disabled, u.UpdatedAt = disabled, now
	s.users[id] = u
	if disabled {
		s.revokeAll(id, "", store.ReasonUserDisable, now)
	}
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
	c.Grants = words(strings.Join(c.Grants, " "))
	c.Scopes = words(strings.Join(c.Scopes, " "))
	c.CreatedAt = msTime(c.CreatedAt)
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

// UpdateClient replaces the client's secret hash, grants and scopes, or
// returns ErrNotFound.
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
	old.Grants = words(strings.Join(c.Grants, " "))
	old.Scopes = words(strings.Join(c.Scopes, " "))
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

// CreateSession stores and indexes a new session for an existing, enabled
// user (ErrUserInactive otherwise; ErrConflict if the session id is
// taken). The user agent is cut to store.MaxUserAgent bytes.
func (s *Store) CreateSession(ctx context.Context, ns store.NewSession) error {
	x := ns.Session
	if x.UserID != "" && x.ID == "" {
		return errors.New("memstore: create session: empty session id")
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[x.UserID]
	if !ok || u.Disabled {
		return store.ErrUserInactive
	}
	if s.session(x.UserID, x.ID) != nil {
		return store.ErrConflict
	}
	rec := &session{
		s: store.Session{
			ID:        x.ID,
			UserID:    x.UserID,
			ClientID:  x.ClientID,
			Scope:     x.Scope,
			UserAgent: store.TruncateUserAgent(x.UserAgent),
			IP:        x.IP,
			CreatedAt: msTime(x.CreatedAt),
			UpdatedAt: msTime(x.CreatedAt),
			ExpiresAt: msTime(x.ExpiresAt),
		},
		h: ns.Token,
	}
	rec.expire = rec.s.ExpiresAt.Add(TombstoneGrace)
	if !s.clock().Before(rec.expire) {
		return nil // born expired, like a PEXPIREAT in the past
	}
	m := s.sessions[x.UserID]
	if m == nil {
		m = map[string]*session{}
		s.sessions[x.UserID] = m
	}
	m[x.ID] = rec
	return nil
}

// Rotate checks the presented refresh token and, if it is the session's
// current one, replaces it with r.Next. The checks run in the order of
// redisstore's rotate script (which documents why): unknown session or
// token, user inactive (revokes), revoked, expired, client mismatch, then
// a used token revokes (reuse) and the current one rotates after the
// scope check.
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	if err := s.lock(); err != nil {
		return store.Rotated{}, err
	}
	defer s.mu.Unlock()
	now := msTime(nowOr(r.Now))
	x := s.session(r.UserID, r.SessionID)
	if x == nil {
		return store.Rotated{}, store.ErrTokenUnknown
	}
	current := r.Presented == x.h
	if !current && !x.wasUsed(r.Presented) {
		return store.Rotated{}, store.ErrTokenUnknown
	}
	u, ok := s.users[r.UserID]
	if !ok || u.Disabled {
		reason := store.ReasonUserDeleted
		if ok {
			reason = store.ReasonUserDisable
		}
		x.revoke(reason, now)
		return store.Rotated{}, store.ErrUserInactive
	}
	switch {
	case !x.s.RevokedAt.IsZero():
		return store.Rotated{}, store.ErrTokenRevoked
	case !now.Before(x.s.ExpiresAt):
		return store.Rotated{}, store.ErrTokenExpired
	case x.s.ClientID != r.ClientID:
		return store.Rotated{}, store.ErrClientMismatch
	case !current && x.h == r.Next && bytes.HasSuffix(x.used, r.Presented[:fingerprint]):
		// A replay of the rotation that made the current token (see
		// redisstore's rotate script): answer it again.
		scope := strings.Join(scopeFields(r.Scope), " ")
		if scope == "" {
			scope = x.s.Scope
		}
		return store.Rotated{Session: x.s, Scope: scope, Roles: slices.Clone(u.Roles)}, nil
	case !current:
		x.revoke(store.ReasonReuse, now)
		return store.Rotated{}, store.ErrTokenReused
	}
	scope := strings.Join(scopeFields(r.Scope), " ")
	if scope != "" && !subset(scopeFields(scope), scopeFields(x.s.Scope)) {
		return store.Rotated{}, store.ErrScopeWidened
	}
	x.used = append(x.used, x.h[:fingerprint]...)
	if n := len(x.used) - UsedTokens*fingerprint; n > 0 {
		x.used = slices.Clone(x.used[n:])
	}
	x.h = r.Next
	x.s.Generation++
	x.s.UpdatedAt = now
	if scope == "" {
		scope = x.s.Scope
	}
	return store.Rotated{Session: x.s, Scope: scope, Roles: slices.Clone(u.Roles)}, nil
}

// TokenSession finds the session of a current or used refresh token,
// whatever the session's state, or returns ErrTokenUnknown.
func (s *Store) TokenSession(ctx context.Context, userID, sessionID string, h store.TokenHash) (store.TokenInfo, error) {
	if err := s.lock(); err != nil {
		return store.TokenInfo{}, err
	}
	defer s.mu.Unlock()
	x := s.session(userID, sessionID)
	switch {
	case x == nil:
		return store.TokenInfo{}, store.ErrTokenUnknown
	case x.h == h:
		return store.TokenInfo{Session: x.s, Current: true}, nil
	case x.wasUsed(h):
		return store.TokenInfo{Session: x.s}, nil
	}
	return store.TokenInfo{}, store.ErrTokenUnknown
}

// Session returns the session whatever its state, or ErrNotFound.
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	if err := s.lock(); err != nil {
		return store.Session{}, err
	}
	defer s.mu.Unlock()
	x := s.session(userID, sessionID)
	if x == nil {
		return store.Session{}, store.ErrNotFound
	}
	return x.s, nil
}

// ListSessions returns the user's sessions active at now, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now = msTime(nowOr(now))
	out := []store.Session{}
	for sid := range s.sessions[userID] {
		if x := s.session(userID, sid); x != nil && x.s.Active(now) {
			out = append(out, x.s)
		}
	}
	slices.SortFunc(out, func(a, b store.Session) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
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
	x := s.session(userID, sessionID)
	if x == nil {
		return store.ErrNotFound
	}
	x.revoke(reasonOr(reason), msTime(nowOr(now)))
	return nil
}

// RevokeUserSessions revokes the user's sessions active at now except
// `except`, and returns how many.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) (int, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.revokeAll(userID, except, reasonOr(reason), msTime(nowOr(now))), nil
}

// revokeAll revokes the user's sessions active at now but one. Called
// with mu held.
func (s *Store) revokeAll(userID, except, reason string, now time.Time) int {
	n := 0
	for sid := range s.sessions[userID] {
		if x := s.session(userID, sid); x != nil && sid != except && x.s.Active(now) {
			x.revoke(reason, now)
			n++
		}
	}
	return n
}

// revoke marks the session revoked unless it already is.
func (x *session) revoke(reason string, now time.Time) {
	if x.s.RevokedAt.IsZero() {
		x.s.RevokedAt, x.s.RevokeReason = now, reason
	}
}

// wasUsed reports whether h's fingerprint is among the used tokens.
func (x *session) wasUsed(h store.TokenHash) bool {
	for i := 0; i+fingerprint <= len(x.used); i += fingerprint {
		if string(x.used[i:i+fingerprint]) == string(h[:fingerprint]) {
			return true
		}
	}
	return false
}

// Helpers shared in spirit with redisstore, whose encoding they mimic.

// msTime truncates t to the millisecond in the local zone, as a round trip
// through unix milliseconds does; the zero time stays zero.
func msTime(t time.Time) time.Time {
	if t.IsZero() || t.UnixMilli() == 0 {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli())
}

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func reasonOr(r string) string {
	if r == "" {
		return store.ReasonRevoked
	}
	return r
}

// words splits a space-joined list; empty gives nil.
func words(v string) []string {
	f := strings.Fields(v)
	if len(f) == 0 {
		return nil
	}
	return f
}

// scopeFields splits a scope at ASCII white space (as redisstore's Lua
// does).
func scopeFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
	})
}

// subset reports whether every item of want is in have.
func subset(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
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
	return c
}
