// Package storetest is the conformance suite every store.Store backend
// passes: store/redisstore and store/memstore run it from their tests.
//
// The rotation rule is checked row by row against one table (rule.go)
// whose expectations follow store.Decide's documentation. A session record
// outlives its expiry by store.TombstoneGrace. Expiry is tested by passing
// times in the past or future, never by sleeping.
//
// It also checks decorators of store.Store: CheckMethodTable (methods.go)
// holds each decorator's per-method table against store.Store's methods.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokend/tokend/store"
)

const tombstoneGrace = store.TombstoneGrace

// refreshKey is the refresh key id the suite's sessions start with.
const refreshKey = "k1"

// Run runs the suite. newStore returns a fresh, empty store for one
// subtest and arranges for it to be closed when the subtest ends. Subtests
// run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, e *env)
	}{
		{"CreateUser", testCreateUser},
		{"UserConflicts", testUserConflicts},
		{"ConcurrentCreateUser", testConcurrentCreateUser},
		{"LookAlikeUsers", testLookAlikeUsers},
		{"UserNotFound", testUserNotFound},
		{"UpdateUser", testUpdateUser},
		{"InvalidRoles", testInvalidRoles},
		{"ListUsers", testListUsers},
		{"DisableUser", testDisableUser},
		{"DeleteUser", testDeleteUser},
		{"Clients", testClients},
		{"UpdateClient", testUpdateClient},
		{"CreateSession", testCreateSession},
		{"CreateSessionInactiveUser", testCreateSessionInactiveUser},
		{"CreateSessionProof", testCreateSessionProof},
		{"UseProof", testUseProof},
		{"ClientPolicy", testClientPolicy},
		{"Rotate", testRotate},
		{"RotateNarrowScope", testRotateNarrowScope},
		{"RotateWidenScope", testRotateWidenScope},
		{"RotateClientMismatch", testRotateClientMismatch},
		{"RotateUnknown", testRotateUnknown},
		{"RotateExpired", testRotateExpired},
		{"ExpiredRecordsVanish", testExpiredRecordsVanish},
		{"RotateRevoked", testRotateRevoked},
		{"RotationRule", testRotationRule},
		{"SessionPlace", testSessionPlace},
		{"RevokeSession", testRevokeSession},
		{"RevokeUserSessions", testRevokeUserSessions},
		{"Logout", testLogout},
		{"LogoutReuse", testLogoutReuse},
		{"SessionCap", testSessionCap},
		{"ListSessions", testListSessions},
		{"ConcurrentRotate", testConcurrentRotate},
		{"ConcurrentRetry", testConcurrentRetry},
		{"PingClose", testPingClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t, &env{t: t, st: newStore(t), ctx: context.Background(), now: time.Now().Truncate(time.Millisecond)})
		})
	}
}

// env is one subtest's store and helpers. now is a millisecond-precise
// wall-clock time: record expiry follows the real clock, so times given
// to the store stay near it.
type env struct {
	t   *testing.T
	st  store.Store
	ctx context.Context
	now time.Time
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns an id shaped like token.NewID's.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

func newRequest() store.RequestID {
	var r store.RequestID
	_, _ = rand.Read(r[:])
	return r
}

// user creates an enabled user.
func (e *env) user(name string, roles ...string) store.User {
	e.t.Helper()
	u := store.User{
		ID: newID(), Username: name, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		Roles: roles, CreatedAt: e.now.Add(-time.Hour), UpdatedAt: e.now.Add(-time.Hour),
	}
	if err := e.st.CreateUser(e.ctx, u); err != nil {
		e.t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// session starts a session created at `created` that expires at
// `expires` for client "web" with the given scope.
func (e *env) session(uid, scope string, created, expires time.Time) store.Session {
	e.t.Helper()
	s := store.Session{
		ID: newID(), UserID: uid, ClientID: "web", KeyID: refreshKey, Scope: scope, UserAgent: "Mozilla/5.0 test",
		IP: "192.0.2.1", CreatedAt: created, ExpiresAt: expires,
	}
	if _, err := e.st.CreateSession(e.ctx, store.NewSession{Session: s}); err != nil {
		e.t.Fatalf("CreateSession: %v", err)
	}
	s.UpdatedAt = created
	return s
}

// proof returns a new DPoP proof by key "A" or "B", remembered for an
// hour.
func (e *env) proof(key string) *store.Proof {
	return &store.Proof{JKT: "jkt-" + key, ID: newID(), Expiry: e.now.Add(time.Hour)}
}

// live starts a 24-hour session created now.
func (e *env) live(uid string) store.Session {
	e.t.Helper()
	return e.session(uid, "openid profile", e.now, e.now.Add(24*time.Hour))
}

// rotation is a strict (no reuse window) refresh of s by client "web" at
// e.now, presenting generation gen, from a new request.
func (e *env) rotation(s store.Session, gen uint64) store.Rotation {
	return store.Rotation{Presentation: store.Presentation{
		UserID: s.UserID, SessionID: s.ID, Generation: gen, KeyID: refreshKey, ClientID: "web", Now: e.now, RequestID: newRequest(),
	}}
}

// rotate rotates generation gen and fails the test unless that is
// OutcomeRotated; it returns the new generation.
func (e *env) rotate(s store.Session, gen uint64) (store.Rotated, uint64) {
	e.t.Helper()
	got, err := e.st.Rotate(e.ctx, e.rotation(s, gen))
	if err != nil {
		e.t.Fatalf("Rotate: %v", err)
	}
	if got.Outcome != store.OutcomeRotated || got.Session.Generation != gen+1 {
		e.t.Fatalf("Rotate(%d): outcome %v, generation %d", gen, got.Outcome, got.Session.Generation)
	}
	return got, got.Session.Generation
}

// refuse asserts that Rotate fails with want.
func (e *env) refuse(r store.Rotation, want error) {
	e.t.Helper()
	if _, err := e.st.Rotate(e.ctx, r); !errors.Is(err, want) {
		e.t.Fatalf("Rotate: got %v, want %v", err, want)
	}
}

// get returns a session that must exist.
func (e *env) get(s store.Session) store.Session {
	e.t.Helper()
	got, err := e.st.Session(e.ctx, s.UserID, s.ID)
	if err != nil {
		e.t.Fatalf("Session(%s): %v", s.ID, err)
	}
	return got
}

// wantErr fails unless errors.Is(err, want).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sameSession(t *testing.T, got, want store.Session) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.ClientID != want.ClientID ||
		got.KeyID != want.KeyID || got.JKT != want.JKT ||
		got.Scope != want.Scope || got.UserAgent != want.UserAgent || got.IP != want.IP ||
		got.Generation != want.Generation || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.UpdatedAt.Equal(want.UpdatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
		!got.RevokedAt.Equal(want.RevokedAt) || got.RevokeReason != want.RevokeReason ||
		got.LastRequest != want.LastRequest {
		t.Fatalf("session:\n got  %+v\n want %+v", got, want)
	}
}

func sameUser(t *testing.T, got, want store.User) {
	t.Helper()
	if got.ID != want.ID || got.Username != want.Username || got.PasswordHash != want.PasswordHash ||
		strings.Join(got.Roles, ",") != strings.Join(want.Roles, ",") || got.Disabled != want.Disabled ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("user:\n got  %+v\n want %+v", got, want)
	}
}

// Users.

func testCreateUser(t *testing.T, e *env) {
	u := e.user("Alice", "admin", "dev")
	got, err := e.st.User(e.ctx, u.ID)
	must(t, err)
	sameUser(t, got, u)
	for _, name := range []string{"Alice", "alice", "ALICE"} {
		got, err := e.st.UserByName(e.ctx, name)
		must(t, err)
		sameUser(t, got, u)
	}
	none := e.user("nobody")
	got, err = e.st.User(e.ctx, none.ID)
	must(t, err)
	if got.Roles != nil {
		t.Fatalf("roles of a user without roles: %#v, want nil", got.Roles)
	}
}

func testUserConflicts(t *testing.T, e *env) {
	u := e.user("alice")
	other := store.User{ID: newID(), Username: "ALICE", PasswordHash: "x"}
	wantErr(t, "same name, other case", e.st.CreateUser(e.ctx, other), store.ErrConflict)
	_, err := e.st.User(e.ctx, other.ID)
	wantErr(t, "loser of a name conflict", err, store.ErrNotFound)
	wantErr(t, "same id", e.st.CreateUser(e.ctx, store.User{ID: u.ID, Username: "bob"}), store.ErrConflict)
	_, err = e.st.UserByName(e.ctx, "bob")
	wantErr(t, "loser of an id conflict", err, store.ErrNotFound)
	got, err := e.st.UserByName(e.ctx, "alice")
	must(t, err)
	sameUser(t, got, u)
	users, err := e.st.ListUsers(e.ctx)
	must(t, err)
	if len(users) != 1 {
		t.Fatalf("ListUsers after conflicts: %d users", len(users))
	}
}

// testConcurrentCreateUser: of racing sign-ups for one name (in any
// case), exactly one succeeds.
func testConcurrentCreateUser(t *testing.T, e *env) {
	won := e.raceCreateUser(20, "dave", "Dave", "DAVE", "dAvE")
	users, err := e.st.ListUsers(e.ctx)
	must(t, err)
	if won != 1 || len(users) != 1 {
		t.Fatalf("%d sign-ups succeeded, %d users listed; want 1", won, len(users))
	}
	got, err := e.st.UserByName(e.ctx, "DaVe")
	must(t, err)
	if got.ID != users[0].ID {
		t.Fatalf("UserByName finds %s, ListUsers %s", got.ID, users[0].ID)
	}
}

// raceCreateUser creates racers users at once, named by turns from names,
// and returns how many were created; every refusal must be ErrConflict.
func (e *env) raceCreateUser(racers int, names ...string) (won int) {
	e.t.Helper()
	errs := make(chan error, racers)
	for i := range racers {
		go func() {
			errs <- e.st.CreateUser(e.ctx, store.User{ID: newID(), Username: names[i%len(names)], CreatedAt: e.now})
		}()
	}
	for range racers {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			e.t.Fatalf("CreateUser: %v", err)
		}
	}
	return won
}

// testLookAlikeUsers: a name with the skeleton of an existing user's
// (credential.Skeleton) is refused with ErrLookAlike and leaves nothing
// behind; the name is free again once that user is deleted; of racing
// look-alikes exactly one is created.
func testLookAlikeUsers(t *testing.T, e *env) {
	ace := e.user("ace")
	for _, name := range []string{"\u0430\u0441\u0435", "ACE", "\u0430ce"} { // all Cyrillic; other case; mixed
		id := newID()
		err := e.st.CreateUser(e.ctx, store.User{ID: id, Username: name, CreatedAt: e.now})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateUser(%q) beside ace: %v, want ErrConflict", name, err)
		}
		if name != "ACE" && !errors.Is(err, store.ErrLookAlike) {
			t.Fatalf("CreateUser(%q) beside ace: %v, want ErrLookAlike", name, err)
		}
		_, err = e.st.User(e.ctx, id)
		wantErr(t, "the look-alike's record", err, store.ErrNotFound)
		if u, err := e.st.UserByName(e.ctx, name); err == nil && u.ID != ace.ID {
			t.Fatalf("UserByName(%q) finds the refused user", name)
		}
	}
	e.user("b0b")
	wantErr(t, "bob beside b0b", e.st.CreateUser(e.ctx, store.User{ID: newID(), Username: "bob", CreatedAt: e.now}), store.ErrLookAlike)
	e.user("acme") // not a look-alike
	must(t, e.st.DeleteUser(e.ctx, ace.ID))
	cyr := e.user("\u0430\u0441\u0435")
	wantErr(t, "ace beside асе", e.st.CreateUser(e.ctx, store.User{ID: newID(), Username: "ace", CreatedAt: e.now}), store.ErrLookAlike)
	got, err := e.st.UserByName(e.ctx, "\u0430\u0441\u0435")
	must(t, err)
	sameUser(t, got, cyr)

	if won := e.raceCreateUser(16, "paypal", "\u0440\u0430\u0443\u0440\u0430\u04cf", "PAYPAL", "p\u0430yp\u0430l"); won != 1 {
		t.Fatalf("%d of 16 racing look-alikes were created, want 1", won)
	}
	users, err := e.st.ListUsers(e.ctx)
	must(t, err)
	if len(users) != 4 { // b0b, acme, асе and the winner
		t.Fatalf("ListUsers: %d users, want 4", len(users))
	}
}

func testUserNotFound(t *testing.T, e *env) {
	id := newID()
	_, err := e.st.User(e.ctx, id)
	wantErr(t, "User", err, store.ErrNotFound)
	_, err = e.st.User(e.ctx, "")
	wantErr(t, `User("")`, err, store.ErrNotFound)
	_, err = e.st.UserByName(e.ctx, "ghost")
	wantErr(t, "UserByName", err, store.ErrNotFound)
	wantErr(t, "UpdateUser", e.st.UpdateUser(e.ctx, store.User{ID: id, Username: "ghost"}), store.ErrNotFound)
	wantErr(t, "SetUserDisabled", e.st.SetUserDisabled(e.ctx, id, true, e.now), store.ErrNotFound)
	wantErr(t, "DeleteUser", e.st.DeleteUser(e.ctx, id), store.ErrNotFound)
	if err := e.st.CreateUser(e.ctx, store.User{Username: "noid"}); err == nil {
		t.Fatal("CreateUser without an id succeeded")
	}
}

func testUpdateUser(t *testing.T, e *env) {
	u := e.user("alice", "user")
	upd := u
	upd.Username = "renamed" // ignored
	upd.PasswordHash = "$argon2id$new"
	upd.Roles = []string{"admin", "user"}
	upd.Disabled = true // ignored: SetUserDisabled's job
	upd.UpdatedAt = e.now
	must(t, e.st.UpdateUser(e.ctx, upd))
	want := u
	want.PasswordHash, want.Roles, want.UpdatedAt = upd.PasswordHash, upd.Roles, e.now
	got, err := e.st.UserByName(e.ctx, "alice")
	must(t, err)
	sameUser(t, got, want)
	upd.Roles = nil
	must(t, e.st.UpdateUser(e.ctx, upd))
	got, err = e.st.User(e.ctx, u.ID)
	must(t, err)
	if got.Roles != nil {
		t.Fatalf("roles after clearing: %#v", got.Roles)
	}
}

func testListUsers(t *testing.T, e *env) {
	users, err := e.st.ListUsers(e.ctx)
	must(t, err)
	if len(users) != 0 {
		t.Fatalf("ListUsers of an empty store: %v", users)
	}
	c, a, b := e.user("carol"), e.user("Alice"), e.user("bob")
	users, err = e.st.ListUsers(e.ctx)
	must(t, err)
	if len(users) != 3 {
		t.Fatalf("ListUsers: %d users, want 3", len(users))
	}
	for i, want := range []store.User{a, b, c} {
		sameUser(t, users[i], want)
	}
}

func testDisableUser(t *testing.T, e *env) {
	u := e.user("alice")
	s1 := e.live(u.ID)
	s2 := e.live(u.ID)
	e.rotate(s2, 0)
	must(t, e.st.SetUserDisabled(e.ctx, u.ID, true, e.now))
	got, err := e.st.User(e.ctx, u.ID)
	must(t, err)
	if !got.Disabled || !got.UpdatedAt.Equal(e.now) || !got.SessionsEnded.Equal(e.now) {
		t.Fatalf("after disabling: %+v", got)
	}
	for _, s := range []store.Session{s1, s2} {
		if g := e.get(s); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonUserDisable {
			t.Fatalf("session of a disabled user: %+v", g)
		}
	}
	r := e.rotation(s1, 0)
	r.Now = e.now.Add(10 * time.Second)
	e.refuse(r, store.ErrUserInactive) // records the end as it reads: at the disabling
	if g := e.get(s1); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonUserDisable {
		t.Fatalf("session of a disabled user after a refused rotation: %+v", g)
	}
	ss, err := e.st.ListSessions(e.ctx, u.ID, e.now)
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions of a disabled user: %d", len(ss))
	}
	_, err = e.st.CreateSession(e.ctx, store.NewSession{Session: store.Session{
		ID: newID(), UserID: u.ID, ClientID: "web", CreatedAt: e.now, ExpiresAt: e.now.Add(time.Hour)}})
	wantErr(t, "CreateSession for a disabled user", err, store.ErrUserInactive)

	later := e.now.Add(time.Minute)
	must(t, e.st.SetUserDisabled(e.ctx, u.ID, false, later))
	got, err = e.st.User(e.ctx, u.ID)
	must(t, err)
	if got.Disabled || !got.UpdatedAt.Equal(later) {
		t.Fatalf("after enabling: %+v", got)
	}
	e.refuse(e.rotation(s2, 1), store.ErrTokenRevoked) // old sessions stay ended
	r1 := e.rotation(s1, 0)
	r1.Now = later
	e.refuse(r1, store.ErrTokenRevoked)
	if g := e.get(s2); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonUserDisable {
		t.Fatalf("session ended by disabling, after re-enabling: %+v", g)
	}
	s3 := e.session(u.ID, "openid", later, later.Add(time.Hour))
	r = e.rotation(s3, 0)
	r.Now = later
	_, err = e.st.Rotate(e.ctx, r)
	must(t, err)
}

func testDeleteUser(t *testing.T, e *env) {
	u := e.user("alice")
	keep := e.user("bob")
	sb := e.live(keep.ID)
	active := e.live(u.ID)
	revoked := e.live(u.ID)
	must(t, e.st.RevokeSession(e.ctx, u.ID, revoked.ID, store.ReasonLogout, e.now))
	rotated := e.live(u.ID)
	e.rotate(rotated, 0)

	must(t, e.st.DeleteUser(e.ctx, u.ID))
	_, err := e.st.User(e.ctx, u.ID)
	wantErr(t, "User after delete", err, store.ErrNotFound)
	_, err = e.st.UserByName(e.ctx, "alice")
	wantErr(t, "UserByName after delete", err, store.ErrNotFound)
	for _, s := range []store.Session{active, rotated} {
		_, err := e.st.Session(e.ctx, u.ID, s.ID)
		wantErr(t, "Session of a deleted user", err, store.ErrNotFound)
		e.refuse(e.rotation(s, s.Generation), store.ErrTokenUnknown)
	}
	// A session that had already ended may outlive the user until its
	// record expires; it can never be used again.
	_, err = e.st.Rotate(e.ctx, e.rotation(revoked, 0))
	if !errors.Is(err, store.ErrTokenUnknown) && !errors.Is(err, store.ErrUserInactive) {
		t.Fatalf("Rotate of an ended session of a deleted user: %v", err)
	}
	ss, err := e.st.ListSessions(e.ctx, u.ID, e.now)
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions of a deleted user: %d", len(ss))
	}
	users, err := e.st.ListUsers(e.ctx)
	must(t, err)
	if len(users) != 1 || users[0].ID != keep.ID {
		t.Fatalf("ListUsers after delete: %+v", users)
	}
	wantErr(t, "DeleteUser twice", e.st.DeleteUser(e.ctx, u.ID), store.ErrNotFound)
	e.rotate(sb, 0) // other users are untouched
	again := e.user("ALICE")
	got, err := e.st.UserByName(e.ctx, "alice")
	must(t, err)
	sameUser(t, got, again)
}

// Clients.

func testClients(t *testing.T, e *env) {
	list, err := e.st.ListClients(e.ctx)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("ListClients of an empty store: %v", list)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	conf := store.Client{ID: "backend", SecretHash: secret, Grants: []string{"client_credentials"},
		Scopes: []string{"read", "write"}, CreatedAt: e.now}
	pub := store.Client{ID: "app", Public: true, Grants: []string{"password", "refresh_token"}, CreatedAt: e.now}
	must(t, e.st.CreateClient(e.ctx, conf))
	must(t, e.st.CreateClient(e.ctx, pub))
	wantErr(t, "CreateClient twice", e.st.CreateClient(e.ctx, store.Client{ID: "app"}), store.ErrConflict)
	if err := e.st.CreateClient(e.ctx, store.Client{}); err == nil {
		t.Fatal("CreateClient without an id succeeded")
	}
	same := func(got, want store.Client) {
		t.Helper()
		if got.ID != want.ID || string(got.SecretHash) != string(want.SecretHash) || (got.SecretHash == nil) != (want.SecretHash == nil) ||
			got.Public != want.Public || strings.Join(got.Grants, " ") != strings.Join(want.Grants, " ") ||
			strings.Join(got.Scopes, " ") != strings.Join(want.Scopes, " ") || (got.Scopes == nil) != (want.Scopes == nil) ||
			!got.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("client:\n got  %+v\n want %+v", got, want)
		}
	}
	got, err := e.st.Client(e.ctx, "backend")
	must(t, err)
	same(got, conf)
	got, err = e.st.Client(e.ctx, "app")
	must(t, err)
	same(got, pub)
	list, err = e.st.ListClients(e.ctx)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListClients: %d", len(list))
	}
	same(list[0], pub)
	same(list[1], conf)

	must(t, e.st.DeleteClient(e.ctx, "app"))
	_, err = e.st.Client(e.ctx, "app")
	wantErr(t, "Client after delete", err, store.ErrNotFound)
	_, err = e.st.Client(e.ctx, "")
	wantErr(t, `Client("")`, err, store.ErrNotFound)
	wantErr(t, "DeleteClient twice", e.st.DeleteClient(e.ctx, "app"), store.ErrNotFound)
	list, err = e.st.ListClients(e.ctx)
	must(t, err)
	if len(list) != 1 || list[0].ID != "backend" {
		t.Fatalf("ListClients after delete: %+v", list)
	}
}

// Sessions.

func testCreateSession(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.session(u.ID, "openid", e.now.Add(-time.Minute), e.now.Add(time.Hour))
	sameSession(t, e.get(s), s)
	if g := e.get(s); !g.Active(e.now) || g.Generation != 0 || g.LastRequest != (store.RequestID{}) {
		t.Fatalf("new session: %+v", g)
	}
	_, err := e.st.CreateSession(e.ctx, store.NewSession{Session: s})
	wantErr(t, "CreateSession with a taken id", err, store.ErrConflict)

	long := store.Session{ID: newID(), UserID: u.ID, ClientID: "web", KeyID: refreshKey, UserAgent: strings.Repeat("é", 200),
		CreatedAt: e.now, ExpiresAt: e.now.Add(time.Hour)}
	_, err = e.st.CreateSession(e.ctx, store.NewSession{Session: long})
	must(t, err)
	ua := e.get(long).UserAgent
	if len(ua) != store.MaxUserAgent || !utf8.ValidString(ua) || !strings.HasPrefix(long.UserAgent, ua) {
		t.Fatalf("long user agent kept as %d bytes (valid UTF-8: %v)", len(ua), utf8.ValidString(ua))
	}
	if _, err := e.st.CreateSession(e.ctx, store.NewSession{Session: store.Session{UserID: u.ID,
		ClientID: "web", CreatedAt: e.now, ExpiresAt: e.now.Add(time.Hour)}}); err == nil {
		t.Fatal("CreateSession without a session id succeeded")
	}
}

func testCreateSessionInactiveUser(t *testing.T, e *env) {
	ns := store.NewSession{Session: store.Session{ID: newID(), UserID: newID(), ClientID: "web",
		CreatedAt: e.now, ExpiresAt: e.now.Add(time.Hour)}}
	_, err := e.st.CreateSession(e.ctx, ns)
	wantErr(t, "CreateSession for an unknown user", err, store.ErrUserInactive)
	ns.Session.UserID = ""
	_, err = e.st.CreateSession(e.ctx, ns)
	wantErr(t, "CreateSession without a user", err, store.ErrUserInactive)
	u := e.user("alice")
	must(t, e.st.SetUserDisabled(e.ctx, u.ID, true, e.now))
	ns.Session.UserID = u.ID
	_, err = e.st.CreateSession(e.ctx, ns)
	wantErr(t, "CreateSession for a disabled user", err, store.ErrUserInactive)
	_, err = e.st.Session(e.ctx, u.ID, ns.Session.ID)
	wantErr(t, "refused session", err, store.ErrNotFound)
}

func testRotate(t *testing.T, e *env) {
	u := e.user("alice", "admin", "user")
	s := e.session(u.ID, "openid profile", e.now.Add(-time.Hour), e.now.Add(23*time.Hour))
	for gen := uint64(1); gen <= 3; gen++ {
		at := e.now.Add(time.Duration(gen) * time.Minute)
		r := e.rotation(s, gen-1)
		r.Now = at
		got, err := e.st.Rotate(e.ctx, r)
		must(t, err)
		want := s
		want.Generation, want.UpdatedAt, want.LastRequest = gen, at, r.RequestID
		sameSession(t, got.Session, want)
		sameSession(t, e.get(s), want)
		if got.Outcome != store.OutcomeRotated || got.Scope != "openid profile" || strings.Join(got.Roles, " ") != "admin user" {
			t.Fatalf("rotated: outcome %v scope %q roles %v", got.Outcome, got.Scope, got.Roles)
		}
	}
	// Roles come from the user at rotation time.
	must(t, e.st.UpdateUser(e.ctx, store.User{ID: u.ID, PasswordHash: u.PasswordHash, UpdatedAt: e.now}))
	got, _ := e.rotate(s, 3)
	if got.Roles != nil {
		t.Fatalf("roles after removing them: %v", got.Roles)
	}
	// A zero Now means the current time.
	r := store.Rotation{Presentation: store.Presentation{UserID: u.ID, SessionID: s.ID, Generation: 4, KeyID: refreshKey, ClientID: "web", RequestID: newRequest()}}
	before := time.Now().Truncate(time.Millisecond)
	got, err := e.st.Rotate(e.ctx, r)
	must(t, err)
	if got.Session.UpdatedAt.Before(before) || got.Session.UpdatedAt.After(time.Now()) {
		t.Fatalf("rotation without Now: UpdatedAt %v, want about %v", got.Session.UpdatedAt, before)
	}
}
