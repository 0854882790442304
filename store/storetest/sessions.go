package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

func testRotateNarrowScope(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.session(u.ID, "openid profile email", e.now, e.now.Add(time.Hour))
	r := e.rotation(s, h)
	r.Scope = "  email\topenid "
	got, err := e.st.Rotate(e.ctx, r)
	must(t, err)
	if got.Scope != "email openid" || got.Session.Scope != "openid profile email" {
		t.Fatalf("narrowed rotation: scope %q, session scope %q", got.Scope, got.Session.Scope)
	}
	// Narrowing applies to one access token; the grant stays.
	got, _ = e.rotate(s, r.Next)
	if got.Scope != "openid profile email" {
		t.Fatalf("next rotation's scope %q", got.Scope)
	}
}

func testRotateWidenScope(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.session(u.ID, "openid profile", e.now, e.now.Add(time.Hour))
	for _, scope := range []string{"openid admin", "admin", "openid profile email", "openidprofile"} {
		r := e.rotation(s, h)
		r.Scope = scope
		e.refuse(r, store.ErrScopeWidened)
	}
	if g := e.get(s); g.Generation != 0 || !g.Active(e.now) {
		t.Fatalf("session after refused widenings: %+v", g)
	}
	r := e.rotation(s, h) // the token is still current
	r.Scope = "profile"
	if _, err := e.st.Rotate(e.ctx, r); err != nil {
		t.Fatalf("narrowing after refused widenings: %v", err)
	}
	// A session granted no scope cannot gain one.
	s2, h2 := e.session(u.ID, "", e.now, e.now.Add(time.Hour))
	r = e.rotation(s2, h2)
	r.Scope = "openid"
	e.refuse(r, store.ErrScopeWidened)
}

func testRotateClientMismatch(t *testing.T, e *env) {
	u := e.user("alice")
	s, h0 := e.live(u.ID)
	_, h1 := e.rotate(s, h0)
	r := e.rotation(s, h1)
	r.ClientID = "evil"
	e.refuse(r, store.ErrClientMismatch) // current token, other client
	r.Presented = h0
	e.refuse(r, store.ErrClientMismatch) // used token, other client: no revocation
	if g := e.get(s); !g.Active(e.now) || g.Generation != 1 {
		t.Fatalf("session after another client's attempts: %+v", g)
	}
	e.rotate(s, h1) // the owner still can
}

func testRotateUnknown(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.live(u.ID)
	other := e.user("bob")

	r := e.rotation(s, h)
	r.SessionID = newID()
	e.refuse(r, store.ErrTokenUnknown) // no such session
	r = e.rotation(s, h)
	r.UserID = other.ID
	e.refuse(r, store.ErrTokenUnknown) // session of another user
	r.UserID, r.SessionID = "", ""
	e.refuse(r, store.ErrTokenUnknown)
	for range 3 {
		e.refuse(e.rotation(s, newHash()), store.ErrTokenUnknown) // forged secret, real ids
	}
	if g := e.get(s); !g.Active(e.now) || g.Generation != 0 {
		t.Fatalf("a forged secret changed the session: %+v", g)
	}
	e.rotate(s, h)
}

func testRotateExpired(t *testing.T, e *env) {
	u := e.user("alice")
	past, hp := e.session(u.ID, "openid", e.now.Add(-25*time.Hour), e.now.Add(-time.Minute))
	e.refuse(e.rotation(past, hp), store.ErrTokenExpired)
	e.refuse(e.rotation(past, newHash()), store.ErrTokenUnknown) // a forgery learns nothing
	if g := e.get(past); g.Generation != 0 || !g.RevokedAt.IsZero() || g.Active(e.now) {
		t.Fatalf("expired session after refused rotations: %+v", g)
	}

	s, h := e.session(u.ID, "openid", e.now, e.now.Add(time.Hour))
	r := e.rotation(s, h)
	r.Now = s.ExpiresAt // expiry is exclusive
	e.refuse(r, store.ErrTokenExpired)
	r.Now = s.ExpiresAt.Add(-time.Millisecond)
	if _, err := e.st.Rotate(e.ctx, r); err != nil {
		t.Fatalf("rotation a millisecond before expiry: %v", err)
	}
	r = e.rotation(s, r.Next)
	r.Now = s.ExpiresAt.Add(30 * time.Minute) // within the tombstone grace
	e.refuse(r, store.ErrTokenExpired)
}

func testExpiredRecordsVanish(t *testing.T, e *env) {
	u := e.user("alice")
	end := e.now.Add(-tombstoneGrace - time.Minute)
	s, h := e.session(u.ID, "openid", end.Add(-24*time.Hour), end)
	_, err := e.st.Session(e.ctx, u.ID, s.ID)
	wantErr(t, "Session past its tombstone grace", err, store.ErrNotFound)
	e.refuse(e.rotation(s, h), store.ErrTokenUnknown)
	wantErr(t, "RevokeSession past its tombstone grace",
		e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now), store.ErrNotFound)
	n, err := e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonRevoked, end.Add(-time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("RevokeUserSessions revoked %d vanished sessions", n)
	}
	ss, err := e.st.ListSessions(e.ctx, u.ID, end.Add(-time.Hour))
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions lists a vanished session: %+v", ss)
	}
	// A vanished session's id is free again.
	s.CreatedAt, s.ExpiresAt = e.now, e.now.Add(time.Hour)
	must(t, e.st.CreateSession(e.ctx, store.NewSession{Session: s, Token: h}))
	e.rotate(s, h)
}

func testRotateRevoked(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.live(u.ID)
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now))
	e.refuse(e.rotation(s, h), store.ErrTokenRevoked)
	e.refuse(e.rotation(s, newHash()), store.ErrTokenUnknown) // a forgery learns nothing
	g := e.get(s)
	if !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonLogout || g.Active(e.now) {
		t.Fatalf("revoked session: %+v", g)
	}
}

func testReuse(t *testing.T, e *env) {
	u := e.user("alice")
	s, a := e.live(u.ID)
	_, b := e.rotate(s, a)
	at := e.now.Add(time.Minute)
	r := e.rotation(s, a)
	r.Now = at
	e.refuse(r, store.ErrTokenReused)
	g := e.get(s)
	if !g.RevokedAt.Equal(at) || g.RevokeReason != store.ReasonReuse || g.Generation != 1 {
		t.Fatalf("session after reuse: %+v", g)
	}
	e.refuse(e.rotation(s, b), store.ErrTokenRevoked) // the thief's or the victim's new token
	e.refuse(e.rotation(s, a), store.ErrTokenRevoked)
	ss, err := e.st.ListSessions(e.ctx, u.ID, e.now)
	must(t, err)
	if len(ss) != 0 {
		t.Fatalf("ListSessions after reuse: %+v", ss)
	}
}

// A rotation sent twice — the same presented and next hashes, as when a
// Redis client resends a script whose reply a broken connection lost —
// answers the same success twice and revokes nothing; any other use of
// the old token is still reuse.
func testRotateReplay(t *testing.T, e *env) {
	u := e.user("alice", "admin")
	s, a := e.live(u.ID)
	r := e.rotation(s, a)
	first, err := e.st.Rotate(e.ctx, r)
	must(t, err)
	again, err := e.st.Rotate(e.ctx, r)
	if err != nil {
		t.Fatalf("replayed rotation: %v", err)
	}
	if again.Session.Generation != first.Session.Generation || again.Scope != first.Scope ||
		strings.Join(again.Roles, " ") != "admin" {
		t.Fatalf("replay answered %+v, first %+v", again, first)
	}
	if g := e.get(s); !g.Active(e.now) || g.Generation != 1 {
		t.Fatalf("session after a replay: %+v", g)
	}
	_, c := e.rotate(s, r.Next) // the token the replayed request got still works
	stale := r
	stale.Next = c // an older token that happens to be used: not a replay
	e.refuse(stale, store.ErrTokenReused)
}

func testReuseOldGeneration(t *testing.T, e *env) {
	u := e.user("alice")
	s, t0 := e.live(u.ID)
	_, t1 := e.rotate(s, t0)
	_, t2 := e.rotate(s, t1)
	_, t3 := e.rotate(s, t2)
	_ = t3
	e.refuse(e.rotation(s, t0), store.ErrTokenReused)
	if g := e.get(s); g.RevokeReason != store.ReasonReuse {
		t.Fatalf("session after reusing a 3-generation-old token: %+v", g)
	}
}

func testUsedTokenMemory(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.live(u.ID)
	tokens := []store.TokenHash{h}
	for range usedTokens + 1 {
		_, h = e.rotate(s, h)
		tokens = append(tokens, h)
	}
	// tokens[0] is usedTokens+1 generations old: forgotten, so unknown,
	// and nothing is revoked.
	e.refuse(e.rotation(s, tokens[0]), store.ErrTokenUnknown)
	_, err := e.st.TokenSession(e.ctx, u.ID, s.ID, tokens[0])
	wantErr(t, "TokenSession of a forgotten token", err, store.ErrTokenUnknown)
	if g := e.get(s); !g.Active(e.now) {
		t.Fatalf("a forgotten token revoked the session: %+v", g)
	}
	info, err := e.st.TokenSession(e.ctx, u.ID, s.ID, tokens[1])
	must(t, err)
	if info.Current {
		t.Fatal("the oldest remembered token is current")
	}
	e.refuse(e.rotation(s, tokens[1]), store.ErrTokenReused)
}

func testTokenSession(t *testing.T, e *env) {
	u := e.user("alice")
	s, a := e.live(u.ID)
	rot, b := e.rotate(s, a)
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonRevoked, e.now))
	want := rot.Session
	want.RevokedAt, want.RevokeReason = e.now, store.ReasonRevoked
	for _, c := range []struct {
		h       store.TokenHash
		current bool
	}{{a, false}, {b, true}} {
		info, err := e.st.TokenSession(e.ctx, u.ID, s.ID, c.h)
		must(t, err)
		if info.Current != c.current {
			t.Fatalf("TokenSession current = %v, want %v", info.Current, c.current)
		}
		sameSession(t, info.Session, want)
	}
	for _, c := range []struct{ uid, sid string }{{u.ID, s.ID}, {u.ID, newID()}, {newID(), s.ID}, {"", ""}} {
		h := newHash()
		if c.sid != s.ID || c.uid != u.ID {
			h = b
		}
		_, err := e.st.TokenSession(e.ctx, c.uid, c.sid, h)
		wantErr(t, "TokenSession of an unknown token", err, store.ErrTokenUnknown)
	}
	_, err := e.st.Session(e.ctx, u.ID, newID())
	wantErr(t, "Session of an unknown id", err, store.ErrNotFound)
	_, err = e.st.Session(e.ctx, "", "")
	wantErr(t, "Session without ids", err, store.ErrNotFound)
}

func testRevokeSession(t *testing.T, e *env) {
	u := e.user("alice")
	s, h := e.live(u.ID)
	other, ho := e.live(u.ID)
	wantErr(t, "RevokeSession of an unknown session",
		e.st.RevokeSession(e.ctx, u.ID, newID(), store.ReasonLogout, e.now), store.ErrNotFound)
	wantErr(t, "RevokeSession without ids", e.st.RevokeSession(e.ctx, "", "", store.ReasonLogout, e.now), store.ErrNotFound)
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonLogout, e.now))
	must(t, e.st.RevokeSession(e.ctx, u.ID, s.ID, store.ReasonRevoked, e.now.Add(time.Minute))) // idempotent
	g := e.get(s)
	if !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonLogout {
		t.Fatalf("revoked twice: %+v, want the first revocation kept", g)
	}
	e.refuse(e.rotation(s, h), store.ErrTokenRevoked)
	e.rotate(other, ho) // only that session
	// An empty reason records "revoked".
	must(t, e.st.RevokeSession(e.ctx, u.ID, other.ID, "", e.now))
	if g := e.get(other); g.RevokeReason != store.ReasonRevoked {
		t.Fatalf("reason of a revocation without one: %q", g.RevokeReason)
	}
}

func testRevokeUserSessions(t *testing.T, e *env) {
	u := e.user("alice")
	bob := e.user("bob")
	keep, hk := e.live(u.ID)
	a, ha := e.live(u.ID)
	b, _ := e.live(u.ID)
	old, _ := e.live(u.ID)
	must(t, e.st.RevokeSession(e.ctx, u.ID, old.ID, store.ReasonLogout, e.now.Add(-time.Minute)))
	gone, _ := e.session(u.ID, "", e.now.Add(-2*time.Hour), e.now.Add(-time.Minute))
	bs, hb := e.live(bob.ID)

	n, err := e.st.RevokeUserSessions(e.ctx, u.ID, keep.ID, store.ReasonLogout, e.now)
	must(t, err)
	if n != 2 {
		t.Fatalf("RevokeUserSessions revoked %d, want 2", n)
	}
	for _, s := range []store.Session{a, b} {
		if g := e.get(s); !g.RevokedAt.Equal(e.now) || g.RevokeReason != store.ReasonLogout {
			t.Fatalf("revoked session: %+v", g)
		}
	}
	if g := e.get(old); !g.RevokedAt.Equal(e.now.Add(-time.Minute)) {
		t.Fatalf("an earlier revocation was overwritten: %+v", g)
	}
	if g := e.get(gone); !g.RevokedAt.IsZero() {
		t.Fatalf("an expired session was revoked: %+v", g)
	}
	e.refuse(e.rotation(a, ha), store.ErrTokenRevoked)
	e.rotate(keep, hk)
	e.rotate(bs, hb)

	n, err = e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonLogout, e.now)
	must(t, err)
	if n != 1 || e.get(keep).Active(e.now) {
		t.Fatalf("RevokeUserSessions without except revoked %d", n)
	}
	n, err = e.st.RevokeUserSessions(e.ctx, newID(), "", store.ReasonLogout, e.now)
	must(t, err)
	if n != 0 {
		t.Fatalf("RevokeUserSessions of an unknown user revoked %d", n)
	}
	n, err = e.st.RevokeUserSessions(e.ctx, "", "", store.ReasonLogout, e.now)
	if err != nil || n != 0 {
		t.Fatalf(`RevokeUserSessions(""): %d, %v`, n, err)
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
	older, _ := e.session(u.ID, "a", e.now.Add(-3*time.Hour), e.now.Add(2*time.Hour))
	newest, hn := e.session(u.ID, "b", e.now.Add(-time.Hour), e.now.Add(20*time.Hour))
	middle, _ := e.session(u.ID, "c", e.now.Add(-2*time.Hour), e.now.Add(22*time.Hour))
	revoked, _ := e.session(u.ID, "d", e.now.Add(-30*time.Minute), e.now.Add(22*time.Hour))
	must(t, e.st.RevokeSession(e.ctx, u.ID, revoked.ID, store.ReasonLogout, e.now))
	e.session(u.ID, "e", e.now.Add(-25*time.Hour), e.now.Add(-time.Hour)) // expired
	rot, _ := e.rotate(newest, hn)

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
	x, _ := e.session(u2.ID, "", e.now, e.now.Add(time.Hour))
	y, _ := e.session(u2.ID, "", e.now, e.now.Add(time.Hour))
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

// testConcurrentRotate races 50 rotations of one token, 100 times: exactly
// one wins each round, the others are refused as reuse (or, once the
// first loser has revoked the session, as revoked), and the winner's new
// token is refused too, because the session was revoked as stolen.
func testConcurrentRotate(t *testing.T, e *env) {
	const rounds, racers = 100, 50
	u := e.user("alice")
	for round := range rounds {
		s, h := e.live(u.ID)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			winners []store.TokenHash
			errs    = map[error]int{}
		)
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.rotation(s, h)
				<-start
				_, err := e.st.Rotate(e.ctx, r)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners = append(winners, r.Next)
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
		if len(winners) != 1 || errs[store.ErrTokenReused] < 1 ||
			errs[store.ErrTokenReused]+errs[store.ErrTokenRevoked] != racers-1 {
			t.Fatalf("round %d: %d winners, refusals %v", round, len(winners), errs)
		}
		g := e.get(s)
		if g.RevokeReason != store.ReasonReuse || g.Generation != 1 {
			t.Fatalf("round %d: session after the race: %+v", round, g)
		}
		e.refuse(e.rotation(s, winners[0]), store.ErrTokenRevoked)
	}
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
