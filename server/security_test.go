package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// presentAll presents rt from n goroutines at once and returns each
// answer's status, error and refresh token.
func presentAll(t *testing.T, e *env, hc *http.Client, rt string, n int) []presented {
	t.Helper()
	out := make([]presented, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			form := url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}}
			resp, err := hc.PostForm(e.srv.URL+"/oauth/token", form)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			out[i].status = resp.StatusCode
			_ = jsonDecode(resp, &out[i])
		})
	}
	close(start)
	wg.Wait()
	return out
}

type presented struct {
	status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// 50 goroutines present the same refresh token at once, 100 rounds, with
// the default REFRESH_REUSE_WINDOW: every presentation succeeds, every
// success carries the same refresh token (byte for byte) and a fresh access
// token of its own, and exactly one rotation happens per round (the
// session's generation moves by one; the store's rotations count 1
// rotated + 49 retried). The next round presents that one token.
func TestConcurrentRefreshExactlyOnce(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		const goroutines, rounds = 50, 100
		e := newEnv(t, newStore(t), time.Hour)
		tr := &http.Transport{MaxIdleConnsPerHost: goroutines}
		t.Cleanup(tr.CloseIdleConnections)
		hc := &http.Client{Transport: tr}
		rt := e.signIn().str("refresh_token")
		p := e.parsed(rt)
		for round := range rounds {
			answers := presentAll(t, e, hc, rt, goroutines)
			access := map[string]bool{}
			for i, a := range answers {
				if a.status != 200 {
					t.Fatalf("round %d, presentation %d: %d %s %s", round, i, a.status, a.Error, a.Description)
				}
				if a.RefreshToken != answers[0].RefreshToken {
					t.Fatalf("round %d: two refresh tokens handed out:\n%s\n%s", round, answers[0].RefreshToken, a.RefreshToken)
				}
				access[a.AccessToken] = true
			}
			if len(access) != goroutines {
				t.Fatalf("round %d: %d distinct access tokens for %d answers", round, len(access), goroutines)
			}
			// Exactly one rotation: the child is the next generation, and
			// the store is there.
			if want := e.derive(rt, uint64(round)+1); answers[0].RefreshToken != want {
				t.Fatalf("round %d: child is not generation %d", round, round+1)
			}
			sess, err := e.store.Session(context.Background(), p.UserID, p.SessionID)
			must(t, err)
			if sess.Generation != uint64(round)+1 || !sess.Active(e.clock.Now()) {
				t.Fatalf("round %d: session at generation %d (active %v), want %d", round, sess.Generation, sess.Active(e.clock.Now()), round+1)
			}
			rt = answers[0].RefreshToken
		}
		m := e.scrape()
		if rotated, retried := m[`tokend_refresh_rotations_total{outcome="rotated"}`], m[`tokend_refresh_rotations_total{outcome="retried"}`]; rotated != rounds || retried != rounds*(goroutines-1) {
			t.Fatalf("rotations: %v rotated, %v retried; want %d and %d", rotated, retried, rounds, rounds*(goroutines-1))
		}
		if n := reuseTotal(m); n != 0 {
			t.Fatalf("%v reuse detections", n)
		}
	})
}

// With REFRESH_REUSE_WINDOW=0 (strict single use), of 50 concurrent
// presentations exactly one succeeds; the others are reuse, which revokes
// the session, so the winner's new token is refused too.
func TestConcurrentRefreshStrict(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		const goroutines, rounds = 50, 20
		e := newEnv(t, newStore(t), time.Hour, window(0))
		tr := &http.Transport{MaxIdleConnsPerHost: goroutines}
		t.Cleanup(tr.CloseIdleConnections)
		hc := &http.Client{Transport: tr}
		for round := range rounds {
			rt := e.signIn().str("refresh_token")
			var winner string
			ok, reused := 0, 0
			for _, a := range presentAll(t, e, hc, rt, goroutines) {
				switch {
				case a.status == 200:
					ok++
					winner = a.RefreshToken
				case a.status == 400 && a.Error == "invalid_grant":
					if strings.Contains(a.Description, "already used") {
						reused++
					}
				default:
					t.Fatalf("round %d: unexpected answer %d %+v", round, a.status, a)
				}
			}
			if ok != 1 || reused == 0 {
				t.Fatalf("round %d: %d successes, %d reuse detections; want exactly 1 success", round, ok, reused)
			}
			wantError(t, e.refresh(winner), 400, "invalid_grant", "revoked")
		}
	})
}

func TestClientBindingAndScope(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		rt := e.signIn().str("refresh_token") // issued to the public client "web" with "read write"
		// Another client presenting it is refused, and the token still works for its owner.
		a := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, backendApp, e.secret)
		wantError(t, a, 400, "invalid_grant", "another client")
		// Widening is refused without spending the token.
		a = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}, "scope": {"read write admin"}})
		wantError(t, a, 400, "invalid_scope", "originally granted")
		// Narrowing works and does not shrink the session.
		a = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}, "scope": {"read"}})
		if a.status != 200 || a.str("scope") != "read" {
			t.Fatalf("narrowing: %d %s", a.status, a.body)
		}
		b := e.refresh(a.str("refresh_token"))
		if b.status != 200 || b.str("scope") != "read write" {
			t.Fatalf("after narrowing: %d %s", b.status, b.body)
		}
		// Sign-in scope beyond the client's is refused.
		wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}, "scope": {"admin"}}), 400, "invalid_scope", "admin")
	})
}

func TestDisabledAndDeletedUsers(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		ctx := context.Background()
		rt1, rt2 := e.signIn().str("refresh_token"), e.signIn().str("refresh_token")
		must(t, e.store.SetUserDisabled(ctx, e.userID, true, e.clock.Now()))
		wantError(t, e.refresh(rt1), 400, "invalid_grant", "")
		wantError(t, e.refresh(rt2), 400, "invalid_grant", "")
		// A disabled user cannot sign in; the answer for a wrong password does not reveal the account state.
		wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}}), 400, "invalid_grant", "disabled")
		wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {"wrong password"}}), 400, "invalid_grant", "invalid username or password")
		must(t, e.store.SetUserDisabled(ctx, e.userID, false, e.clock.Now()))
		wantError(t, e.refresh(rt1), 400, "invalid_grant", "") // enabling does not resurrect sessions
		rt3 := e.signIn().str("refresh_token")
		must(t, e.store.DeleteUser(ctx, e.userID))
		wantError(t, e.refresh(rt3), 400, "invalid_grant", "")
		wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}}), 400, "invalid_grant", "invalid username or password")
	})
}

func TestPasswordGrantErrors(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	signIn := func(user, pw string) answer {
		return e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {user}, "password": {pw}})
	}
	h := e.hasher.(*countingHasher)
	unknown := signIn("mallory", "whatever1")
	if h.dummies.Load() != 1 || h.verifies.Load() != 0 {
		t.Fatalf("unknown user: %d dummy and %d real verifications, want the same argon2id work as a known user", h.dummies.Load(), h.verifies.Load())
	}
	wrong := signIn(testUser, "whatever1")
	if h.verifies.Load() != 1 {
		t.Fatalf("wrong password: %d verifications", h.verifies.Load())
	}
	if unknown.status != wrong.status || unknown.str("error_description") != wrong.str("error_description") {
		t.Fatalf("unknown user and wrong password differ: %s vs %s", unknown.body, wrong.body)
	}
	wantError(t, unknown, 400, "invalid_grant", "invalid username or password")
	// Usernames are case-insensitive.
	if a := signIn(strings.ToUpper(testUser), testPassword); a.status != 200 {
		t.Fatalf("case-insensitive username: %d %s", a.status, a.body)
	}
	// The client is authenticated before the password is looked at: a bad
	// client secret with a good password is invalid_client, never a grant.
	before := h.verifies.Load() + h.dummies.Load()
	a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, backendApp, "wrong-secret")
	wantError(t, a, 401, "invalid_client", "")
	if n := h.verifies.Load() + h.dummies.Load(); n != before {
		t.Fatal("the password was checked for an unauthenticated client")
	}
	if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("401 without WWW-Authenticate: %v", a.header)
	}
	a = e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"nobody"}, "username": {testUser}, "password": {"wrong"}})
	wantError(t, a, 401, "invalid_client", "")
	wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "client_secret": {"x"}, "username": {testUser}, "password": {testPassword}}), 401, "invalid_client", "public client")
	wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {backendApp}, "username": {testUser}, "password": {testPassword}}), 401, "invalid_client", "secret required")
	// Confidential client signs a user in with client_secret_basic.
	if a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, backendApp, e.secret); a.status != 200 {
		t.Fatalf("basic auth sign-in: %d %s", a.status, a.body)
	}
}

// Bad input gets a 4xx RFC error — never a 5xx — and loses nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	rt := e.signIn().str("refresh_token")
	huge := strings.Repeat("a", 10<<20)
	cases := []struct {
		name, method, path, ctype, body, auth string
		status                                int
		code                                  string
	}{
		{"missing grant_type", "POST", "/oauth/token", "application/x-www-form-urlencoded", "client_id=web", "", 400, "invalid_request"},
		{"unknown grant", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=authorization_code&client_id=web", "", 400, "unsupported_grant_type"},
		{"missing username", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&client_id=web&password=x", "", 400, "invalid_request"},
		{"missing password", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&client_id=web&username=alice", "", 400, "invalid_request"},
		{"missing refresh_token", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&client_id=web", "", 400, "invalid_request"},
		{"missing client", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&username=alice&password=x", "", 401, "invalid_client"},
		{"malformed JSON", "POST", "/oauth/token", "application/json", `{"grant_type":`, "", 400, "invalid_request"},
		{"JSON array", "POST", "/oauth/token", "application/json", `[1,2]`, "", 400, "invalid_request"},
		{"JSON non-string", "POST", "/oauth/token", "application/json", `{"grant_type":"password","client_id":5}`, "", 400, "invalid_request"},
		{"JSON null", "POST", "/oauth/token", "application/json", `null`, "", 400, "invalid_request"},
		{"JSON repeated key", "POST", "/oauth/token", "application/json", `{"grant_type":"password","client_id":"web","username":"alice","password":"x","password":"y"}`, "", 400, "invalid_request"},
		{"JSON trailing data", "POST", "/oauth/token", "application/json", `{"grant_type":"password"} {"x":"y"}`, "", 400, "invalid_request"},
		{"JSON unclosed object", "POST", "/oauth/token", "application/json", `{"grant_type":"password"`, "", 400, "invalid_request"},
		{"10 MiB body", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&x=" + huge, "", 413, "invalid_request"},
		{"10 MiB JSON", "POST", "/oauth/token", "application/json", `{"x":"` + huge + `"}`, "", 413, "invalid_request"},
		{"no content type", "POST", "/oauth/token", "", "grant_type=password", "", 400, "invalid_request"},
		{"text/plain", "POST", "/oauth/token", "text/plain", "grant_type=password", "", 400, "invalid_request"},
		{"repeated parameter", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&grant_type=refresh_token&client_id=web", "", 400, "invalid_request"},
		{"bad form encoding", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=%zz", "", 400, "invalid_request"},
		{"GET", "GET", "/oauth/token", "", "", "", 405, "invalid_request"},
		{"credentials in query", "POST", "/oauth/token?client_secret=s&password=p", "application/x-www-form-urlencoded", "grant_type=password&client_id=web&username=alice", "", 400, "invalid_request"},
		{"refresh token in query", "POST", "/oauth/token?refresh_token=" + rt, "application/x-www-form-urlencoded", "grant_type=refresh_token&client_id=web", "", 400, "invalid_request"},
		{"malformed basic", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Basic !!!", 401, "invalid_client"},
		{"basic without colon", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Basic YWJj", 401, "invalid_client"},
		{"bearer on token endpoint", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", "Bearer abc", 401, "invalid_client"},
		{"two auth methods", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_secret=x", "Basic YmFja2VuZDp4", 400, "invalid_request"},
		{"bad scope chars", "POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&client_id=web&username=alice&password=x&scope=%22", "", 400, "invalid_scope"},
		{"revoke without token", "POST", "/oauth/revoke", "application/x-www-form-urlencoded", "client_id=web", "", 400, "invalid_request"},
		{"introspect public client", "POST", "/oauth/introspect", "application/x-www-form-urlencoded", "client_id=web&token=x", "", 400, "unauthorized_client"},
		{"logout bad scope", "POST", "/logout", "application/x-www-form-urlencoded", "client_id=web&scope=everything&refresh_token=" + rt, "", 400, "invalid_request"},
		{"logout garbage token", "POST", "/logout", "application/x-www-form-urlencoded", "client_id=web&refresh_token=garbage", "", 400, "invalid_grant"},
		{"logout without token", "POST", "/logout", "application/json", `{"client_id":"web"}`, "", 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(c.body))
			must(t, err)
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			a := e.do(req)
			if a.status >= 500 {
				t.Fatalf("5xx for a client mistake: %d %s", a.status, a.body)
			}
			wantError(t, a, c.status, c.code, "")
			if a.str("error_description") == "" {
				t.Fatal("no error_description")
			}
		})
	}
	// Nothing was lost: the refresh token still works after all that.
	if a := e.refresh(rt); a.status != 200 {
		t.Fatalf("token spent by bad requests: %d %s", a.status, a.body)
	}
	// JSON bodies work for the real thing.
	a := e.postJSON("/oauth/token", fmt.Sprintf(`{"grant_type":"password","client_id":%q,"username":%q,"password":%q}`, publicApp, testUser, testPassword))
	if a.status != 200 {
		t.Fatalf("JSON sign-in: %d %s", a.status, a.body)
	}
}

func TestIntrospection(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.signIn()
	at, rt := a.str("access_token"), a.str("refresh_token")
	intro := func(tok string) answer {
		return e.post("/oauth/introspect", url.Values{"token": {tok}}, backendApp, e.secret)
	}
	i := intro(at)
	if i.status != 200 || i.json["active"] != true || i.str("sub") != e.userID || i.str("client_id") != publicApp || i.str("sid") == "" {
		t.Fatalf("introspect access token: %d %s", i.status, i.body)
	}
	// Refresh tokens are described only to their own client.
	if i := intro(rt); i.json["active"] != false {
		t.Fatalf("refresh token described to another client: %s", i.body)
	}
	for _, junk := range []string{"", "x", "a.b.c", "rt_" + strings.Repeat("a", 97)} {
		if junk == "" {
			continue
		}
		if i := intro(junk); i.status != 200 || i.json["active"] != false {
			t.Fatalf("introspect %q: %d %s", junk, i.status, i.body)
		}
	}
	// After logout the still-unexpired JWT is inactive online.
	if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {rt}}); l.status != 204 {
		t.Fatalf("logout %d %s", l.status, l.body)
	}
	if i := intro(at); i.json["active"] != false {
		t.Fatalf("access token of a revoked session still active: %s", i.body)
	}
	// Own refresh token, via a confidential client session.
	b := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, backendApp, e.secret)
	if i := intro(b.str("refresh_token")); i.json["active"] != true || i.str("token_type") != "refresh_token" {
		t.Fatalf("own refresh token: %s", i.body)
	}
	cc := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, backendApp, e.secret)
	if i := intro(cc.str("access_token")); i.json["active"] != true || i.str("sub") != backendApp {
		t.Fatalf("client_credentials token: %s", i.body)
	}
}

func TestLogoutScopes(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		ctx := context.Background()
		a, b, c := e.signIn().str("refresh_token"), e.signIn().str("refresh_token"), e.signIn().str("refresh_token")
		if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {a}, "scope": {"others"}}); l.status != 204 {
			t.Fatalf("logout others: %d %s", l.status, l.body)
		}
		ss, err := e.store.ListSessions(ctx, e.userID, e.clock.Now())
		must(t, err)
		if len(ss) != 1 {
			t.Fatalf("after logout others: %d sessions", len(ss))
		}
		wantError(t, e.refresh(b), 400, "invalid_grant", "revoked")
		wantError(t, e.refresh(c), 400, "invalid_grant", "revoked")
		a2 := e.refresh(a).str("refresh_token")
		a3 := e.refresh(a2).str("refresh_token")
		// A used token (its child used too) cannot log the user out
		// everywhere: it only burns its own session.
		e.clock.Advance(time.Millisecond) // a session started after "log out others"
		d := e.signIn().str("refresh_token")
		wantError(t, e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {a}, "scope": {"global"}}), 400, "invalid_grant", "already used")
		wantError(t, e.refresh(a3), 400, "invalid_grant", "revoked")
		if r := e.refresh(d); r.status != 200 {
			t.Fatalf("other session hit by a used token: %d %s", r.status, r.body)
		}
		d2 := e.refresh(e.signIn().str("refresh_token")).str("refresh_token")
		if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {d2}, "scope": {"global"}}); l.status != 204 {
			t.Fatalf("logout global: %d %s", l.status, l.body)
		}
		ss, err = e.store.ListSessions(ctx, e.userID, e.clock.Now())
		must(t, err)
		if len(ss) != 0 {
			t.Fatalf("after logout global: %d sessions", len(ss))
		}
		// Another client cannot log out this client's session.
		e.clock.Advance(time.Millisecond)
		x := e.signIn().str("refresh_token")
		wantError(t, e.post("/logout", url.Values{"refresh_token": {x}}, backendApp, e.secret), 400, "invalid_grant", "another client")
		wantError(t, e.post("/oauth/revoke", url.Values{"token": {x}}, backendApp, e.secret), 400, "unauthorized_client", "")
	})
}

// Revoking with an access token ends its session.
func TestRevokeAccessToken(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.signIn()
	if r := e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {a.str("access_token")}, "token_type_hint": {"access_token"}}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	wantError(t, e.refresh(a.str("refresh_token")), 400, "invalid_grant", "revoked")
}

// A store outage is a 503 with Retry-After, never a 500, and the service
// recovers by itself when the store returns.
func TestStoreOutage(t *testing.T) {
	srv, st := privateRedisStore(t, "--appendonly", "yes", "--appendfsync", "always") // the production client options
	e := newEnv(t, st, time.Hour)
	rt := e.signIn().str("refresh_token")
	srv.Stop()
	for _, a := range []answer{e.refresh(rt), e.get("/readyz"),
		e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}})} {
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Fatalf("during outage: %d %v %s", a.status, a.header, a.body)
		}
		if strings.Contains(string(a.body), "goroutine") || strings.Contains(string(a.body), "dial tcp") {
			t.Fatalf("internal detail leaked: %s", a.body)
		}
	}
	srv.Start()
	deadline := time.Now().Add(5 * time.Second)
	for e.get("/readyz").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("did not recover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The refresh that failed during the outage was not applied: the same token still works.
	if a := e.refresh(rt); a.status != 200 {
		t.Fatalf("after recovery: %d %s", a.status, a.body)
	}
}

// The logs of a full run contain no password, token or client secret.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.signIn()
	b := e.refresh(a.str("refresh_token"))
	e.refresh(a.str("refresh_token")) // a retry within the window
	c := e.refresh(b.str("refresh_token"))
	e.refresh(a.str("refresh_token")) // reuse: its child has been used
	e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, backendApp, e.secret)
	e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {"wrong-" + testPassword}})
	e.post("/oauth/introspect", url.Values{"token": {b.str("access_token")}}, backendApp, e.secret)
	e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {c.str("refresh_token")}})
	logs := e.logs.String()
	if !strings.Contains(logs, `"event":"refresh.reuse_detected"`) || !strings.Contains(logs, `"event":"refresh.retry"`) || !strings.Contains(logs, `"event":"signin.success"`) {
		t.Fatalf("audit events missing:\n%s", logs)
	}
	for _, secret := range []string{testPassword, e.secret, a.str("access_token"), a.str("refresh_token"), b.str("refresh_token"), b.str("access_token"), c.str("refresh_token")} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the logs")
		}
		if rt, err := token.ParseRefresh(secret); err == nil && strings.Contains(logs, secret[len(secret)-43:]) {
			t.Fatalf("refresh secret of session %s appears in the logs", rt.SessionID)
		}
	}
}
