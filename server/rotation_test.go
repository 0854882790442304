package server_test

// The rotation rule seen from HTTP (docs/design.md, "Sessions and
// rotation"): idempotent retries within REFRESH_REUSE_WINDOW, strict theft
// detection for every earlier token, recovery of a lost rotation, strict
// mode, and MAC checks before any store work.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// Two tabs that read the same token refresh one after the other (and
// again with the token they got): they always receive the same token, and
// the session stays one linear chain.
func TestTwoTabsConverge(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		rt := e.signIn().str("refresh_token")
		for gen := uint64(1); gen <= 5; gen++ {
			tabA := e.refresh(rt)
			e.clock.Advance(2 * time.Second) // the second tab a moment later
			tabB := e.refresh(rt)
			if tabA.status != 200 || tabB.status != 200 {
				t.Fatalf("gen %d: %d %s / %d %s", gen, tabA.status, tabA.body, tabB.status, tabB.body)
			}
			if tabA.str("refresh_token") != tabB.str("refresh_token") || tabA.str("refresh_token") != e.derive(rt, gen) {
				t.Fatalf("gen %d: the tabs diverged", gen)
			}
			if tabA.str("access_token") == tabB.str("access_token") {
				t.Fatalf("gen %d: the same access token twice", gen)
			}
			rt = tabA.str("refresh_token")
			e.clock.Advance(time.Minute) // outside the window before the next round: it does not matter once both moved on
		}
		if n := reuseTotal(e.scrape()); n != 0 {
			t.Fatalf("%v reuse detections", n)
		}
	})
}

// A thief who presents an earlier token after the legitimate client moved
// on revokes the session, every time, whichever earlier token it is: the
// parent of the current token once the window is over, any older token at
// once (its child has been used), and a token 40 generations old (the
// derivation checks every generation; nothing is remembered per token).
func TestThiefAfterClientMovedOn(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), 24*time.Hour)
		cases := []struct {
			name      string
			rotations int           // the client's refreshes before the thief
			stolen    int           // generation the thief presents
			wait      time.Duration // after the client's last refresh
			cause     string
		}{
			{"parent after the window", 1, 0, defaultReuseWindow, store.CauseWindowExpired},
			{"parent long after", 3, 2, time.Hour, store.CauseWindowExpired},
			{"grandparent at once", 2, 0, 0, store.CauseChildUsed},
			{"grandparent within the window", 5, 3, time.Second, store.CauseChildUsed},
			{"40 generations old", 45, 5, 0, store.CauseChildUsed},
			{"sign-in token, 40 generations on", 40, 0, time.Second, store.CauseChildUsed},
		}
		for _, c := range cases {
			for round := range 3 { // every time
				before := e.scrape()
				tokens := []string{e.signIn().str("refresh_token")}
				for range c.rotations {
					a := e.refresh(tokens[len(tokens)-1])
					if a.status != 200 {
						t.Fatalf("%s: refresh: %d %s", c.name, a.status, a.body)
					}
					tokens = append(tokens, a.str("refresh_token"))
				}
				e.clock.Advance(c.wait)
				wantError(t, e.refresh(tokens[c.stolen]), 400, "invalid_grant", "already used")
				// The session is gone, for the client and the thief alike.
				wantError(t, e.refresh(tokens[len(tokens)-1]), 400, "invalid_grant", "revoked")
				wantError(t, e.refresh(tokens[c.stolen]), 400, "invalid_grant", "revoked")
				p := e.parsed(tokens[0])
				sess, err := e.store.Session(context.Background(), p.UserID, p.SessionID)
				must(t, err)
				if sess.RevokeReason != store.ReasonReuse {
					t.Fatalf("%s round %d: session %+v", c.name, round, sess)
				}
				series := `tokend_refresh_reuse_detected_total{cause="` + c.cause + `",via="refresh"}`
				if got := e.scrape()[series] - before[series]; got != 1 {
					t.Fatalf("%s round %d: %s moved by %v", c.name, round, series, got)
				}
			}
		}
		if !strings.Contains(e.logs.String(), `"event":"refresh.reuse_detected"`) || !strings.Contains(e.logs.String(), `"cause":"child_used"`) {
			t.Fatalf("no reuse audit with its cause")
		}
	})
}

// The trade-off of the window, pinned down: a thief who presents the token
// just rotated within the window gets the very token the client got (the
// chain never forks: there are never two valid refresh tokens), and as
// soon as either of them falls behind, the session is revoked.
func TestThiefInsideWindowSharesSession(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	rt0 := e.signIn().str("refresh_token")
	rt1 := e.refresh(rt0).str("refresh_token") // the client
	thief := e.refresh(rt0)                    // the thief, 0 s later, with a copy of rt0
	if thief.status != 200 || thief.str("refresh_token") != rt1 {
		t.Fatalf("thief inside the window: %d %s", thief.status, thief.body)
	}
	rt2 := e.refresh(rt1).str("refresh_token") // the client moves on
	e.clock.Advance(defaultReuseWindow)
	wantError(t, e.refresh(rt1), 400, "invalid_grant", "already used") // the thief, outside the window
	wantError(t, e.refresh(rt2), 400, "invalid_grant", "revoked")
}

// REFRESH_REUSE_WINDOW=0 is strict single use: presenting the token just
// rotated again — a retry, a second tab — is reuse and ends the session.
func TestStrictSingleUse(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour, window(0))
		rt0 := e.signIn().str("refresh_token")
		rt1 := e.refresh(rt0)
		if rt1.status != 200 {
			t.Fatalf("%d %s", rt1.status, rt1.body)
		}
		wantError(t, e.refresh(rt0), 400, "invalid_grant", "already used") // 0 s later
		wantError(t, e.refresh(rt1.str("refresh_token")), 400, "invalid_grant", "revoked")
		if m := e.scrape(); m[`tokend_refresh_reuse_detected_total{cause="window_expired",via="refresh"}`] != 1 {
			t.Fatalf("reuse not counted as window_expired")
		}
		// The current token still rotates, and logout with it works.
		a := e.signIn().str("refresh_token")
		b := e.refresh(a).str("refresh_token")
		c := e.refresh(b).str("refresh_token")
		if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {c}}); l.status != 204 {
			t.Fatalf("logout: %d %s", l.status, l.body)
		}
	})
}

// A reply that is lost after the store rotated (a dropped connection, a
// timeout, a 503 while Redis ran the script anyway): the client retries
// with the same token and gets the very token the lost reply carried.
func TestRetryAfterLostReply(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		ls := &lossyStore{Store: newStore(t)}
		e := newEnv(t, ls, time.Hour)
		rt := e.signIn().str("refresh_token")
		for gen := uint64(1); gen <= 3; gen++ {
			ls.lose.Store(true) // the next rotation is applied, its answer lost
			a := e.refresh(rt)
			if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.str("error") != "temporarily_unavailable" {
				t.Fatalf("lost reply: %d %v %s", a.status, a.header, a.body)
			}
			e.clock.Advance(time.Second) // Retry-After
			b := e.refresh(rt)
			if b.status != 200 || b.str("refresh_token") != e.derive(rt, gen) {
				t.Fatalf("retry: %d %s", b.status, b.body)
			}
			rt = b.str("refresh_token")
		}
		m := e.scrape()
		if m[`tokend_refresh_rotations_total{outcome="retried"}`] != 3 || reuseTotal(m) != 0 {
			t.Fatalf("rotations %v, reuse %v", m[`tokend_refresh_rotations_total{outcome="retried"}`], reuseTotal(m))
		}
		if !strings.Contains(e.logs.String(), `"event":"refresh.retry"`) {
			t.Fatal("no refresh.retry audit event")
		}
	})
}

// lossyStore applies a Rotate and then, when lose is set, reports a
// transport error instead of its answer.
type lossyStore struct {
	store.Store
	lose atomic.Bool
}

var errLostReply = errors.New("read tcp: i/o timeout")

func (s *lossyStore) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	rot, err := s.Store.Rotate(ctx, r)
	if err == nil && s.lose.Swap(false) {
		return store.Rotated{}, errLostReply
	}
	return rot, err
}

// A genuine token ahead of what the store remembers (a rotation
// acknowledged, then lost by a Redis failover) is accepted: the session
// moves to the generation after it. The token the store still thinks is
// current is then an earlier one.
func TestRecoveredAheadOfStore(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		rt0 := e.signIn().str("refresh_token")
		lost := e.derive(rt0, 1) // what a refresh returned before the failover lost it
		a := e.refresh(lost)
		if a.status != 200 || a.str("refresh_token") != e.derive(rt0, 2) {
			t.Fatalf("ahead of the store: %d %s", a.status, a.body)
		}
		p := e.parsed(rt0)
		sess, err := e.store.Session(context.Background(), p.UserID, p.SessionID)
		must(t, err)
		if sess.Generation != 2 {
			t.Fatalf("generation %d, want 2", sess.Generation)
		}
		if m := e.scrape(); m[`tokend_refresh_rotations_total{outcome="recovered"}`] != 1 {
			t.Fatal("recovery not counted")
		}
		if !strings.Contains(e.logs.String(), `"event":"refresh.recovered"`) {
			t.Fatal("no refresh.recovered audit event")
		}
		// rt0 is two generations behind now: theft.
		wantError(t, e.refresh(rt0), 400, "invalid_grant", "already used")
	})
}

// A forged, tampered or foreign-key refresh token is refused as invalid
// before anything reaches the store: not the client lookup, not the
// session. On Redis, counted by the server's own command statistics.
func TestForgedRefreshTokenNoStoreWork(t *testing.T) {
	forgeries := func(e *env, rt string) map[string]string {
		p := e.parsed(rt)
		other := token.NewRefresher(token.StaticRefreshKeys{Set: keys.EphemeralRefresh()})
		foreign, fp, err := other.Mint(p.UserID, p.SessionID, 1)
		must(e.t, err)
		return map[string]string{
			"tampered MAC":         tamper(rt),
			"next generation":      strings.Replace(rt, "_0_", "_1_", 1),
			"other session":        strings.Replace(rt, p.SessionID, token.NewID(), 1),
			"foreign key":          foreign,
			"foreign MAC, our kid": strings.Replace(foreign, "_"+fp.KeyID+"_", "_"+p.KeyID+"_", 1),
			"unknown kid":          strings.Replace(rt, "_"+p.KeyID+"_", "_"+fp.KeyID+"_", 1),
			"malformed":            rt[:len(rt)-1],
			"access token":         e.signIn().str("access_token"),
			"random":               "rt_" + strings.Repeat("a", 100),
			"generation overflow":  strings.Replace(rt, "_0_", "_18446744073709551616_", 1),
		}
	}
	t.Run("redis", func(t *testing.T) {
		srv, st := privateRedisStore(t)
		e := newEnv(t, st, time.Hour)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { rdb.Close() })
		rt := e.signIn().str("refresh_token")
		for name, f := range forgeries(e, rt) {
			before := commandCalls(t, rdb)
			wantError(t, e.refresh(f), 400, "invalid_grant", "invalid")
			if after := commandCalls(t, rdb); after != before {
				t.Errorf("%s: %d Redis commands for a forged token", name, after-before)
			}
		}
		if a := e.refresh(rt); a.status != 200 { // and the genuine token is untouched
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
	t.Run("memory", func(t *testing.T) {
		cs := &countingStore{}
		cs.Store = newMemStore(t)
		e := newEnv(t, cs, time.Hour)
		rt := e.signIn().str("refresh_token")
		for name, f := range forgeries(e, rt) {
			before := cs.calls.Load()
			wantError(t, e.refresh(f), 400, "invalid_grant", "invalid")
			if n := cs.calls.Load() - before; n != 0 {
				t.Errorf("%s: %d store calls for a forged token", name, n)
			}
		}
	})
}

// commandCalls is the number of commands the Redis server has run, other
// than INFO itself and connection set-up.
func commandCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	st, err := redisinfo.CommandStats(context.Background(), rdb)
	must(t, err)
	var n int64
	for name, c := range st {
		if name != "info" && name != "hello" && !strings.HasPrefix(name, "client") {
			n += c.Calls
		}
	}
	return n
}

// countingStore counts the calls a refresh, logout, revocation or
// introspection can make.
type countingStore struct {
	store.Store
	calls atomic.Int64
}

func (s *countingStore) Client(ctx context.Context, id string) (store.Client, error) {
	s.calls.Add(1)
	return s.Store.Client(ctx, id)
}

func (s *countingStore) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	s.calls.Add(1)
	return s.Store.Rotate(ctx, r)
}

func (s *countingStore) Logout(ctx context.Context, l store.Logout) (store.Session, error) {
	s.calls.Add(1)
	return s.Store.Logout(ctx, l)
}

func (s *countingStore) Session(ctx context.Context, uid, sid string) (store.Session, error) {
	s.calls.Add(1)
	return s.Store.Session(ctx, uid, sid)
}

func (s *countingStore) User(ctx context.Context, id string) (store.User, error) {
	s.calls.Add(1)
	return s.Store.User(ctx, id)
}

// Logout, revocation and introspection with earlier and later generations
// of one session.
func TestGenerationsAtTheOtherEndpoints(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		// Logout with the token just rotated, within the window, logs out
		// (it is the client's retry of a logout whose refresh raced it).
		rt0 := e.signIn().str("refresh_token")
		rt1 := e.refresh(rt0).str("refresh_token")
		if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {rt0}}); l.status != 204 {
			t.Fatalf("logout with the previous token: %d %s", l.status, l.body)
		}
		wantError(t, e.refresh(rt1), 400, "invalid_grant", "revoked")
		if m := e.scrape(); reuseTotal(m) != 0 {
			t.Fatal("a logout in the window counted as reuse")
		}
		// A forged token at /logout is invalid, and ends nothing.
		x := e.signIn().str("refresh_token")
		wantError(t, e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {tamper(x)}, "scope": {"global"}}), 400, "invalid_grant", "invalid")
		if a := e.refresh(x); a.status != 200 {
			t.Fatalf("forged logout ended the session: %d %s", a.status, a.body)
		}

		// RFC 7009: any genuine token of the session revokes it; a forged
		// one is a harmless 200.
		y0 := e.signIn().str("refresh_token")
		y1 := e.refresh(y0).str("refresh_token")
		y2 := e.refresh(y1).str("refresh_token")
		if r := e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {tamper(y2)}}); r.status != 200 {
			t.Fatalf("revoke forged: %d", r.status)
		}
		if a := e.refresh(y2); a.status != 200 {
			t.Fatalf("a forged revocation ended the session: %d %s", a.status, a.body)
		}
		if r := e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {y0}}); r.status != 200 {
			t.Fatalf("revoke with an old token: %d", r.status)
		}
		wantError(t, e.refresh(e.derive(y0, 3)), 400, "invalid_grant", "revoked")
	})
	// Introspection: only the current generation (or one ahead) is active.
	e := newEnv(t, redisStore(t), time.Hour)
	intro := func(tok string) answer {
		return e.post("/oauth/introspect", url.Values{"token": {tok}}, backendApp, e.secret)
	}
	b0 := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, backendApp, e.secret).str("refresh_token")
	b1 := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {b0}}, backendApp, e.secret).str("refresh_token")
	for tok, want := range map[string]bool{b0: false, b1: true, e.derive(b0, 2): true, tamper(b1): false} {
		if i := intro(tok); i.status != 200 || i.json["active"] != want {
			t.Fatalf("introspect generation: %d %s, want active=%v", i.status, i.body, want)
		}
	}
}
