package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

func testRotateNarrowScope(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.session(u.ID, "openid profile email", e.now, e.now.Add(time.Hour))
	r := e.rotation(s, 0)
	r.Scope = "  email\topenid "
	got, err := e.st.Rotate(e.ctx, r)
	must(t, err)
	if got.Scope != "email openid" || got.Session.Scope != "openid profile email" {
		t.Fatalf("narrowed rotation: scope %q, session scope %q", got.Scope, got.Session.Scope)
	}
	// Narrowing applies to one access token; the grant stays.
	got, _ = e.rotate(s, 1)
	if got.Scope != "openid profile email" {
		t.Fatalf("next rotation's scope %q", got.Scope)
	}
}

func testRotateWidenScope(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.session(u.ID, "openid profile", e.now, e.now.Add(time.Hour))
	for _, scope := range []string{"openid admin", "admin", "openid profile email", "openidprofile"} {
		r := e.rotation(s, 0)
		r.Scope = scope
		e.refuse(r, store.ErrScopeWidened)
	}
	if g := e.get(s); g.Generation != 0 || !g.Active(e.now) {
		t.Fatalf("session after refused widenings: %+v", g)
	}
	r := e.rotation(s, 0) // the token is still current
	r.Scope = "profile"
	if _, err := e.st.Rotate(e.ctx, r); err != nil {
		t.Fatalf("narrowing after refused widenings: %v", err)
	}
	// A session granted no scope cannot gain one.
	s2 := e.session(u.ID, "", e.now, e.now.Add(time.Hour))
	r = e.rotation(s2, 0)
	r.Scope = "openid"
	e.refuse(r, store.ErrScopeWidened)
}

func testRotateClientMismatch(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.live(u.ID)
	e.rotate(s, 0)
	r := e.rotation(s, 1)
	r.ClientID = "evil"
	e.refuse(r, store.ErrClientMismatch) // current token, other client
	r.Generation = 0
	e.refuse(r, store.ErrClientMismatch) // used token, other client: no revocation
	if g := e.get(s); !g.Active(e.now) || g.Generation != 1 {
		t.Fatalf("session after another client's attempts: %+v", g)
	}
	e.rotate(s, 1) // the owner still can
}

func testRotateUnknown(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.live(u.ID)
	other := e.user("bob")

	r := e.rotation(s, 0)
	r.SessionID = newID()
	e.refuse(r, store.ErrTokenUnknown) // no such session
	r = e.rotation(s, 0)
	r.UserID = other.ID
	e.refuse(r, store.ErrTokenUnknown) // session of another user
	r.UserID, r.SessionID = "", ""
	e.refuse(r, store.ErrTokenUnknown)
	if g := e.get(s); !g.Active(e.now) || g.Generation != 0 {
		t.Fatalf("unknown presentations changed the session: %+v", g)
	}
	e.rotate(s, 0)
}

func testRotateExpired(t *testing.T, e *env) {
	u := e.user("alice")
	past := e.session(u.ID, "openid", e.now.Add(-25*time.Hour), e.now.Add(-time.Minute))
	e.refuse(e.rotation(past, 0), store.ErrTokenExpired)
	if g := e.get(past); g.Generation != 0 || !g.RevokedAt.IsZero() || g.Active(e.now) {
		t.Fatalf("expired session after a refused rotation: %+v", g)
	}

	s := e.session(u.ID, "openid", e.now, e.now.Add(time.Hour))
	r := e.rotation(s, 0)
	r.Now = s.ExpiresAt // expiry is exclusive
	e.refuse(r, store.ErrTokenExpired)
	r.Now = s.ExpiresAt.Add(-time.Millisecond)
	if _, err := e.st.Rotate(e.ctx, r); err != nil {
		t.Fatalf("rotation a millisecond before expiry: %v", err)
	}
	r = e.rotation(s, 1)
	r.Now = s.ExpiresAt.Add(30 * time.Minute) // within the tombstone grace
	e.refuse(r, store.ErrTokenExpired)
}

func testExpiredRecordsVanish(t *testing.T, e *env) {
	u := e.user("alice")
	end := e.now.Add(-tombstoneGrace - time.Minute)
	s := e.session(u.ID, "openid", end.Add(-24*time.Hour), end)
	_, err := e.st.Session(e.ctx, u.ID, s.ID)
	wantErr(t, "Session past its tombstone grace", err, store.ErrNotFound)
	e.refuse(e.rotation(s, 0), store.ErrTokenUnknown)
	wantErr(t, "RevokeSession past its tombstone grace",
		e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now), store.ErrNotFound)
	ss, err := e.st.ListSessions(e.ctx, u.ID, end.Add(-time.Hour))
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions lists a vanished session: %+v", ss)
	}
	// A vanished session's id is free again.
	s.CreatedAt, s.ExpiresAt = e.now, e.now.Add(time.Hour)
	_, err = e.st.CreateSession(e.ctx, store.NewSession{Session: s})
	must(t, err)
	e.rotate(s, 0)
}

func testRotateRevoked(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.live(u.ID)
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now))
	e.refuse(e.rotation(s, 0), store.ErrTokenRevoked)
	g := e.get(s)
	if !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonLogout || g.Active(e.now) {
		t.Fatalf("revoked session: %+v", g)
	}
}

// testSessionPlace: what a server reads to place a MAC-verified token
// (revocation, introspection).
func testSessionPlace(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.live(u.ID)
	e.rotate(s, 0)
	e.rotate(s, 1)
	g := e.get(s)
	for gen, want := range map[uint64]store.Position{
		0: store.PositionOlder, 1: store.PositionPrevious, 2: store.PositionCurrent, 3: store.PositionAhead, 9: store.PositionAhead,
	} {
		if got := store.Place(g, gen); got != want {
			t.Errorf("Place(generation 2, %d) = %v, want %v", gen, got, want)
		}
	}
	_, err := e.st.Session(e.ctx, u.ID, newID())
	wantErr(t, "Session of an unknown id", err, store.ErrNotFound)
	_, err = e.st.Session(e.ctx, "", "")
	wantErr(t, "Session without ids", err, store.ErrNotFound)
}

func testRevokeSession(t *testing.T, e *env) {
	u := e.user("alice")
	s := e.live(u.ID)
	other := e.live(u.ID)
	wantErr(t, "RevokeSession of an unknown session",
		e.st.RevokeSession(e.ctx, u.ID, newID(), store.ReasonLogout, e.now), store.ErrNotFound)
	wantErr(t, "RevokeSession without ids", e.st.RevokeSession(e.ctx, "", "", store.ReasonLogout, e.now), store.ErrNotFound)
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now))
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonRevoked, e.now.Add(time.Minute))) // idempotent
	g := e.get(s)
	if !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonLogout {
		t.Fatalf("revoked twice: %+v, want the first revocation kept", g)
	}
	e.refuse(e.rotation(s, 0), store.ErrTokenRevoked)
	e.rotate(other, 0) // only that session
	// An empty reason records "revoked".
	must(t, e.st.RevokeSession(e.ctx, u.ID, other.ID, "", e.now))
	if g := e.get(other); g.RevokeReason != store.ReasonRevoked {
		t.Fatalf("reason of a revocation without one: %q", g.RevokeReason)
	}
	// A session already ended by the user's SessionsEnded keeps that end.
	third := e.session(u.ID, "openid", e.now.Add(-time.Minute), e.now.Add(time.Hour))
	must(t, e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonRevoked, e.now))
	must(t, e.st.RevokeSession(e.ctx, u.ID, third.ID, store.ReasonLogout, e.now.Add(time.Minute)))
	if g := e.get(third); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonRevoked {
		t.Fatalf("revoking a session ended by SessionsEnded: %+v", g)
	}
}

func testRevokeUserSessions(t *testing.T, e *env) {
	u := e.user("alice")
	bob := e.user("bob")
	created := e.now.Add(-time.Minute)
	keep := e.session(u.ID, "openid", created, e.now.Add(time.Hour))
	a := e.session(u.ID, "openid", created, e.now.Add(time.Hour))
	b := e.session(u.ID, "openid", created, e.now.Add(time.Hour))
	old := e.session(u.ID, "openid", created, e.now.Add(time.Hour))
	must(t, e.st.RevokeSession(e.ctx, u.ID, old.ID, store.ReasonLogout, e.now.Add(-time.Second)))
	gone := e.session(u.ID, "", e.now.Add(-2*time.Hour), e.now.Add(-time.Minute))
	bs := e.live(bob.ID)

	must(t, e.st.RevokeUserSessions(e.ctx, u.ID, keep.ID, store.ReasonRevoked, e.now))
	got, err := e.st.User(e.ctx, u.ID)
	must(t, err)
	if !got.SessionsEnded.Equal(e.now) || got.SessionsExempt != keep.ID || got.SessionsEndReason != store.ReasonRevoked {
		t.Fatalf("user after RevokeUserSessions: %+v", got)
	}
	for _, s := range []store.Session{a, b} {
		if g := e.get(s); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonRevoked || g.Active(e.now) {
			t.Fatalf("ended session: %+v", g)
		}
	}
	if g := e.get(old); !g.RevokedAt.Equal(e.now.Add(-time.Second)) || g.RevokeReason != store.ReasonLogout {
		t.Fatalf("an earlier revocation was overwritten: %+v", g)
	}
	if g := e.get(gone); g.Active(e.now) {
		t.Fatalf("an expired session is active: %+v", g)
	}
	e.refuse(e.rotation(a, 0), store.ErrTokenRevoked)
	e.rotate(keep, 0)
	e.rotate(bs, 0)
	// A session started after it is not ended.
	later := e.session(u.ID, "openid", e.now.Add(time.Millisecond), e.now.Add(time.Hour))
	if ss, err := e.st.ListSessions(e.ctx, u.ID, e.now.Add(time.Second)); err != nil || len(ss) != 2 {
		t.Fatalf("ListSessions after RevokeUserSessions: %+v, %v", ss, err)
	}

	must(t, e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonLogout, e.now.Add(time.Second)))
	for _, s := range []store.Session{keep, later} {
		if e.get(s).Active(e.now.Add(time.Second)) {
			t.Fatalf("RevokeUserSessions without except left %s active", s.ID)
		}
	}
	// The time never moves back.
	must(t, e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonLogout, e.now.Add(-time.Hour)))
	if got, _ := e.st.User(e.ctx, u.ID); !got.SessionsEnded.Equal(e.now.Add(time.Second)) {
		t.Fatalf("SessionsEnded moved back: %v", got.SessionsEnded)
	}
	must(t, e.st.RevokeUserSessions(e.ctx, newID(), "", store.ReasonLogout, e.now))
	must(t, e.st.RevokeUserSessions(e.ctx, "", "", store.ReasonLogout, e.now))
}

// logoutOf is a logout of s by client "web" at e.now.
func (e *env) logoutOf(s store.Session, gen uint64, scope store.LogoutScope) store.Logout {
	return store.Logout{Presentation: store.Presentation{
		UserID: s.UserID, SessionID: s.ID, Generation: gen, KeyID: refreshKey, ClientID: "web", Now: e.now,
	}, Scope: scope}
}

func testLogout(t *testing.T, e *env) {
	u := e.user("alice")
	created := e.now.Add(-time.Minute)
	three := func(created time.Time) []store.Session {
		return []store.Session{
			e.session(u.ID, "openid", created, e.now.Add(time.Hour)),
			e.session(u.ID, "openid", created, e.now.Add(time.Hour)),
			e.session(u.ID, "openid", created, e.now.Add(time.Hour)),
		}
	}
	active := func(ss ...store.Session) []bool {
		var out []bool
		for _, s := range ss {
			out = append(out, e.get(s).Active(e.now))
		}
		return out
	}
	// local, with the current token.
	ss := three(created)
	got, err := e.st.Logout(e.ctx, e.logoutOf(ss[0], 0, store.LogoutLocal))
	must(t, err)
	if got.ID != ss[0].ID || !got.RevokedAt.Equal(e.now) || got.RevokeReason != store.ReasonLogout {
		t.Fatalf("local logout: %+v", got)
	}
	if a := active(ss...); !slices.Equal(a, []bool{false, true, true}) {
		t.Fatalf("after a local logout, active: %v", a)
	}
	// Again: already ended.
	_, err = e.st.Logout(e.ctx, e.logoutOf(ss[0], 0, store.LogoutLocal))
	wantErr(t, "a second logout", err, store.ErrTokenRevoked)
	// others, with the previous token within the window.
	e.rotate(ss[1], 0)
	l := e.logoutOf(ss[1], 0, store.LogoutOthers)
	l.ReuseWindow = time.Minute
	got, err = e.st.Logout(e.ctx, l)
	must(t, err)
	if !got.Active(e.now) {
		t.Fatalf("others logout ended the caller's session: %+v", got)
	}
	if a := active(ss...); !slices.Equal(a, []bool{false, true, false}) {
		t.Fatalf("after logging out others, active: %v", a)
	}
	e.rotate(ss[1], 1)
	// global, with a token ahead of the store.
	ss2 := three(e.now.Add(time.Millisecond)) // after the others logout
	l = e.logoutOf(ss2[2], 1, store.LogoutGlobal)
	l.Now = e.now.Add(time.Second)
	_, err = e.st.Logout(e.ctx, l)
	must(t, err)
	if a := active(append(ss, ss2...)...); slices.Contains(a, true) {
		t.Fatalf("after a global logout, active: %v", a)
	}
	if g := e.get(ss2[2]); g.RevokeReason != store.ReasonLogout {
		t.Fatalf("globally logged out: %+v", g)
	}
	ls, err := e.st.ListSessions(e.ctx, u.ID, e.now)
	must(t, err)
	if len(ls) != 0 {
		t.Fatalf("ListSessions after a global logout: %+v", ls)
	}
	// Refusals: unknown, another client, expired.
	_, err = e.st.Logout(e.ctx, e.logoutOf(store.Session{UserID: u.ID, ID: newID()}, 0, store.LogoutGlobal))
	wantErr(t, "logout of an unknown session", err, store.ErrTokenUnknown)
	s := e.session(u.ID, "openid", e.now.Add(2*time.Second), e.now.Add(time.Hour))
	l = e.logoutOf(s, 0, store.LogoutGlobal)
	l.ClientID = "evil"
	_, err = e.st.Logout(e.ctx, l)
	wantErr(t, "logout by another client", err, store.ErrClientMismatch)
	past := e.session(e.user("bob").ID, "openid", e.now.Add(-2*time.Hour), e.now.Add(-time.Minute))
	_, err = e.st.Logout(e.ctx, e.logoutOf(past, 0, store.LogoutGlobal))
	wantErr(t, "logout of an expired session", err, store.ErrTokenExpired)
	if !e.get(s).Active(e.now.Add(2 * time.Second)) {
		t.Fatal("a refused logout ended a session")
	}
}

// testLogoutReuse: a used token presented to logout revokes its own
// session only — never the user's other sessions.
func testLogoutReuse(t *testing.T, e *env) {
	u := e.user("alice")
	for _, scope := range []store.LogoutScope{store.LogoutLocal, store.LogoutGlobal, store.LogoutOthers} {
		s := e.live(u.ID)
		other := e.live(u.ID)
		e.rotate(s, 0)
		e.rotate(s, 1)
		l := e.logoutOf(s, 0, scope)
		l.ReuseWindow = time.Minute
		got, err := e.st.Logout(e.ctx, l)
		var re *store.ReuseError
		if !errors.As(err, &re) || re.Cause != store.CauseChildUsed || !errors.Is(err, store.ErrTokenReused) {
			t.Fatalf("scope %d: logout with a used token: %v", scope, err)
		}
		if got.RevokeReason != store.ReasonReuse || e.get(s).RevokeReason != store.ReasonReuse {
			t.Fatalf("scope %d: session after: %+v", scope, got)
		}
		if !e.get(other).Active(e.now) {
			t.Fatalf("scope %d: a used token ended another session", scope)
		}
		if usr, _ := e.st.User(e.ctx, u.ID); !usr.SessionsEnded.IsZero() {
			t.Fatalf("scope %d: a used token set SessionsEnded", scope)
		}
		// W=0: the previous token is theft too.
		s2 := e.live(u.ID)
		e.rotate(s2, 0)
		_, err = e.st.Logout(e.ctx, e.logoutOf(s2, 0, scope))
		if !errors.As(err, &re) || re.Cause != store.CauseWindowExpired {
			t.Fatalf("scope %d: strict logout with the previous token: %v", scope, err)
		}
	}
}

// testSessionCap: signing in beyond the cap ends the least recently used
// active sessions, reports them, and never the new one.
func testSessionCap(t *testing.T, e *env) {
	u := e.user("alice")
	start := e.now.Add(-time.Hour)
	create := func(at time.Duration, max int) (store.Session, []string) {
		t.Helper()
		s := store.Session{ID: newID(), UserID: u.ID, ClientID: "web", KeyID: refreshKey, CreatedAt: start.Add(at), ExpiresAt: e.now.Add(time.Hour)}
		ev, err := e.st.CreateSession(e.ctx, store.NewSession{Session: s, Max: max})
		must(t, err)
		s.UpdatedAt = s.CreatedAt
		return s, ev
	}
	a, ev := create(1*time.Second, 3)
	b, ev2 := create(2*time.Second, 3)
	c, ev3 := create(3*time.Second, 3)
	if len(ev)+len(ev2)+len(ev3) != 0 {
		t.Fatalf("evicted below the cap: %v %v %v", ev, ev2, ev3)
	}
	r := e.rotation(a, 0) // a is now the most recently used
	r.Now = start.Add(4 * time.Second)
	_, err := e.st.Rotate(e.ctx, r)
	must(t, err)
	d, ev := create(5*time.Second, 3)
	if !slices.Equal(ev, []string{b.ID}) {
		t.Fatalf("evicted %v, want b %s (LRU)", ev, b.ID)
	}
	if g := e.get(b); !g.RevokedAt.Equal(d.CreatedAt) || g.RevokeReason != store.ReasonEvicted {
		t.Fatalf("evicted session: %+v", g)
	}
	e.refuse(e.rotation(b, 0), store.ErrTokenRevoked)
	// Ended sessions do not count: c ends, the next sign-in evicts none.
	must(t, e.st.RevokeSession(e.ctx, u.ID, c.ID, store.ReasonLogout, start.Add(6*time.Second)))
	_, ev = create(7*time.Second, 3)
	if len(ev) != 0 {
		t.Fatalf("evicted %v with an ended session in the index", ev)
	}
	// Lowering the cap evicts several, oldest use first: d (5s), then a (4s → rotated at 4s, created 1s).
	f, ev := create(8*time.Second, 2)
	if !slices.Equal(ev, []string{a.ID, d.ID}) {
		t.Fatalf("cap lowered to 2: evicted %v, want a %s then d %s", ev, a.ID, d.ID)
	}
	if !e.get(f).Active(e.now) {
		t.Fatal("the new session was evicted")
	}
	// After log out everywhere, nothing is left to evict.
	must(t, e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonLogout, start.Add(9*time.Second)))
	for i := range 3 {
		if _, ev := create(time.Duration(10+i)*time.Second, 3); len(ev) != 0 {
			t.Fatalf("evicted %v after log out everywhere", ev)
		}
	}
	// Max 0 is DefaultMaxSessions.
	u2 := e.user("bob")
	var first store.Session
	for i := range store.DefaultMaxSessions + 1 {
		s := store.Session{ID: newID(), UserID: u2.ID, ClientID: "web", KeyID: refreshKey, CreatedAt: start.Add(time.Duration(i) * time.Millisecond), ExpiresAt: e.now.Add(time.Hour)}
		ev, err := e.st.CreateSession(e.ctx, store.NewSession{Session: s})
		must(t, err)
		if i == 0 {
			first = s
		}
		if i < store.DefaultMaxSessions && len(ev) != 0 || i == store.DefaultMaxSessions && !slices.Equal(ev, []string{first.ID}) {
			t.Fatalf("session %d with the default cap: evicted %v", i, ev)
		}
	}
}

func testListSessions(t *testing.T, e *env) {
	u := e.user("alice")
	bob := e.user("bob")
	e.live(bob.ID)
	ss, err := e.st.ListSessions(e.ctx, newID(), e.now)
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions of an unknown user: %+v", ss)
	}
	ss, err = e.st.ListSessions(e.ctx, "", e.now)
	if err != nil || len(ss) != 0 {
		t.Fatalf(`ListSessions(""): %+v, %v`, ss, err)
	}
	older := e.session(u.ID, "a", e.now.Add(-3*time.Hour), e.now.Add(2*time.Hour))
	newest := e.session(u.ID, "b", e.now.Add(-time.Hour), e.now.Add(20*time.Hour))
	middle := e.session(u.ID, "c", e.now.Add(-2*time.Hour), e.now.Add(22*time.Hour))
	revoked := e.session(u.ID, "d", e.now.Add(-30*time.Minute), e.now.Add(22*time.Hour))
	must(t, e.st.RevokeSession(e.ctx, u.ID, revoked.ID, store.ReasonLogout, e.now))
	e.session(u.ID, "e", e.now.Add(-25*time.Hour), e.now.Add(-time.Hour)) // expired
	rot, _ := e.rotate(newest, 0)

	ss, err = e.st.ListSessions(e.ctx, u.ID, e.now)
	must(t, err)
	want := []store.Session{rot.Session, middle, older}
	if len(ss) != len(want) {
		t.Fatalf("ListSessions: %d sessions, want %d: %+v", len(ss), len(want), ss)
	}
	for i := range want {
		sameSession(t, ss[i], want[i])
	}
	// Sessions created at the same time are ordered by id.
	u2 := e.user("carol")
	x := e.session(u2.ID, "", e.now, e.now.Add(time.Hour))
	y := e.session(u2.ID, "", e.now, e.now.Add(time.Hour))
	if y.ID < x.ID {
		x, y = y, x
	}
	ss, err = e.st.ListSessions(e.ctx, u2.ID, e.now)
	must(t, err)
	if len(ss) != 2 || ss[0].ID != x.ID || ss[1].ID != y.ID {
		t.Fatalf("ListSessions with equal creation times: %+v", ss)
	}
	// Later, the one that expires first is no longer listed.
	ss, err = e.st.ListSessions(e.ctx, u.ID, older.ExpiresAt)
	must(t, err)
	if len(ss) != 2 || ss[0].ID != newest.ID || ss[1].ID != middle.ID {
		t.Fatalf("ListSessions at %v: %+v", older.ExpiresAt, ss)
	}
}

// testConcurrentRotate races 50 strict (W=0) rotations of one generation,
// 100 times: exactly one rotates each round; the others are refused as
// reuse (or, once the first loser has revoked the session, as revoked).
func testConcurrentRotate(t *testing.T, e *env) {
	const rounds, racers = 100, 50
	u := e.user("alice")
	for round := range rounds {
		s := e.live(u.ID)
		outcomes, errs := race(e, racers, func() store.Rotation { return e.rotation(s, 0) })
		if len(outcomes) != 1 || outcomes[0].Outcome != store.OutcomeRotated || errs[store.ErrTokenReused] < 1 ||
			errs[store.ErrTokenReused]+errs[store.ErrTokenRevoked] != racers-1 {
			t.Fatalf("round %d: %d successes, refusals %v", round, len(outcomes), errs)
		}
		if g := e.get(s); g.RevokeReason != store.ReasonReuse || g.Generation != 1 {
			t.Fatalf("round %d: session after the race: %+v", round, g)
		}
	}
}

// testConcurrentRetry races 50 presentations of one generation with a
// reuse window, 100 rounds on one session: each round exactly one
// rotates, every other is answered as a retry, and all carry the same
// generation — the chain stays linear.
func testConcurrentRetry(t *testing.T, e *env) {
	const rounds, racers = 100, 50
	u := e.user("alice")
	s := e.live(u.ID)
	var gen uint64
	for round := range rounds {
		outcomes, errs := race(e, racers, func() store.Rotation {
			r := e.rotation(s, gen)
			r.ReuseWindow = 30 * time.Second
			return r
		})
		rotated := 0
		for _, o := range outcomes {
			if o.Outcome == store.OutcomeRotated {
				rotated++
			} else if o.Outcome != store.OutcomeRetried {
				t.Fatalf("round %d: outcome %v", round, o.Outcome)
			}
			if o.Session.Generation != gen+1 {
				t.Fatalf("round %d: a success carries generation %d, want %d", round, o.Session.Generation, gen+1)
			}
		}
		if rotated != 1 || len(outcomes) != racers {
			t.Fatalf("round %d: %d rotated of %d successes, refusals %v", round, rotated, len(outcomes), errs)
		}
		gen++
	}
	if g := e.get(s); !g.Active(e.now) || g.Generation != rounds {
		t.Fatalf("session after %d rounds: %+v", rounds, g)
	}
}

// race runs n Rotate calls at once and returns the successes and the
// refusals by sentinel.
func race(e *env, n int, rotation func() store.Rotation) ([]store.Rotated, map[error]int) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		ok    []store.Rotated
		errs  = map[error]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rotation()
			<-start
			got, err := e.st.Rotate(e.ctx, r)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok = append(ok, got)
			case errors.Is(err, store.ErrTokenReused):
				errs[store.ErrTokenReused]++
			case errors.Is(err, store.ErrTokenRevoked):
				errs[store.ErrTokenRevoked]++
			default:
				errs[err]++
			}
		}()
	}
	close(start)
	wg.Wait()
	return ok, errs
}

func testPingClose(t *testing.T, e *env) {
	must(t, e.st.Ping(e.ctx))
	must(t, e.st.Close())
	if err := e.st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := e.st.Ping(e.ctx); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
	if _, err := e.st.User(e.ctx, newID()); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User after Close: %v, want a store error", err)
	}
}

// testCreateSessionProof: a sign-in with a DPoP proof binds the session
// to the proof's key and records the proof's id in the same step; the
// same proof again is a replay and starts nothing; every sign-in sets
// the user's LastSignIn.
func testCreateSessionProof(t *testing.T, e *env) {
	u := e.user("alice")
	if got, _ := e.st.User(e.ctx, u.ID); !got.LastSignIn.IsZero() {
		t.Fatalf("LastSignIn before any sign-in: %v", got.LastSignIn)
	}
	p := e.proof("A")
	s := store.Session{ID: newID(), UserID: u.ID, ClientID: "web", KeyID: refreshKey, Scope: "openid",
		CreatedAt: e.now.Add(-time.Second), ExpiresAt: e.now.Add(time.Hour), JKT: "ignored"}
	_, err := e.st.CreateSession(e.ctx, store.NewSession{Session: s, Proof: p})
	must(t, err)
	if g := e.get(s); g.JKT != p.JKT || g.KeyID != refreshKey {
		t.Fatalf("session signed in with a proof: JKT %q KeyID %q", g.JKT, g.KeyID)
	}
	if got, _ := e.st.User(e.ctx, u.ID); !got.LastSignIn.Equal(s.CreatedAt) {
		t.Fatalf("LastSignIn %v, want %v", got.LastSignIn, s.CreatedAt)
	}
	// The same proof again: a replay, nothing written.
	again := s
	again.ID, again.CreatedAt = newID(), e.now
	_, err = e.st.CreateSession(e.ctx, store.NewSession{Session: again, Proof: p})
	wantErr(t, "a sign-in replaying a proof", err, store.ErrProofReplayed)
	_, err = e.st.Session(e.ctx, u.ID, again.ID)
	wantErr(t, "the replayed sign-in's session", err, store.ErrNotFound)
	if got, _ := e.st.User(e.ctx, u.ID); !got.LastSignIn.Equal(s.CreatedAt) {
		t.Fatalf("a refused sign-in moved LastSignIn to %v", got.LastSignIn)
	}
	// The sign-in's proof cannot be replayed on the session's refresh either.
	r := e.rotation(s, 0)
	r.Proof = &store.Proof{JKT: p.JKT, ID: p.ID, Expiry: p.Expiry}
	e.refuse(r, store.ErrProofReplayed)
	r.Proof = e.proof("A")
	if _, err := e.st.Rotate(e.ctx, r); err != nil {
		t.Fatalf("refresh with a fresh proof: %v", err)
	}
	// A sign-in without a proof is unbound, and a proof's ID is the
	// user's own: another user may present the same one.
	plain := e.session(u.ID, "openid", e.now, e.now.Add(time.Hour))
	if g := e.get(plain); g.JKT != "" {
		t.Fatalf("a sign-in without a proof is bound to %q", g.JKT)
	}
	if got, _ := e.st.User(e.ctx, u.ID); !got.LastSignIn.Equal(e.now) {
		t.Fatalf("LastSignIn %v, want %v", got.LastSignIn, e.now)
	}
	for _, bad := range []*store.Proof{{JKT: "x", Expiry: p.Expiry}, {JKT: "x", ID: strings.Repeat("i", store.MaxProofID+1), Expiry: p.Expiry},
		{JKT: "x", ID: "no expiry"}} {
		x := s
		x.ID = newID()
		if _, err := e.st.CreateSession(e.ctx, store.NewSession{Session: x, Proof: bad}); err == nil || errors.Is(err, store.ErrProofReplayed) {
			t.Fatalf("CreateSession with proof %+v: %v", bad, err)
		}
	}
}

// testUseProof: a proof id recorded without a session is refused when
// another request presents it again, and answered again for a resend of
// the same request; a request without an id never matches.
func testUseProof(t *testing.T, e *env) {
	p := *e.proof("A")
	req := newRequest()
	must(t, e.st.UseProof(e.ctx, p, req))
	must(t, e.st.UseProof(e.ctx, p, req)) // the same request, resent
	wantErr(t, "UseProof by another request", e.st.UseProof(e.ctx, p, newRequest()), store.ErrProofReplayed)
	wantErr(t, "UseProof without a request id", e.st.UseProof(e.ctx, p, store.RequestID{}), store.ErrProofReplayed)
	q := *e.proof("A")
	must(t, e.st.UseProof(e.ctx, q, store.RequestID{}))
	wantErr(t, "UseProof again without a request id", e.st.UseProof(e.ctx, q, store.RequestID{}), store.ErrProofReplayed)
	// An expired record is forgotten.
	old := store.Proof{JKT: "jkt-A", ID: newID(), Expiry: time.Now().Add(-time.Second)}
	must(t, e.st.UseProof(e.ctx, old, newRequest()))
	must(t, e.st.UseProof(e.ctx, old, newRequest()))
	if err := e.st.UseProof(e.ctx, store.Proof{ID: "", Expiry: p.Expiry}, req); err == nil || errors.Is(err, store.ErrProofReplayed) {
		t.Fatalf("UseProof without an id: %v", err)
	}
}
