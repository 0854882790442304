package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

// signInAs runs the password grant for the public client with a User-Agent.
func (e *env) signInAs(user, password, userAgent string) answer {
	e.t.Helper()
	form := url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {user}, "password": {password}}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	must(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", userAgent)
	a := e.do(req)
	if a.status != http.StatusOK {
		e.t.Fatalf("sign in as %s: %d %s", user, a.status, a.body)
	}
	return a
}

// bearer sends method path with Authorization: <auth> (none if empty).
func (e *env) bearer(method, path, auth string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	must(e.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return e.do(req)
}

type listedSession struct {
	id, client, ua, ip string
	current            bool
	created, lastUsed  string
	expires            string
}

func (e *env) listSessions(t *testing.T, accessToken string) []listedSession {
	t.Helper()
	a := e.bearer(http.MethodGet, "/sessions", "Bearer "+accessToken)
	if a.status != http.StatusOK || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /sessions: %d %v %s", a.status, a.header, a.body)
	}
	raw, _ := a.json["sessions"].([]any)
	var out []listedSession
	for _, x := range raw {
		m := x.(map[string]any)
		s := func(k string) string { v, _ := m[k].(string); return v }
		cur, _ := m["current"].(bool)
		out = append(out, listedSession{id: s("id"), client: s("client_id"), ua: s("user_agent"), ip: s("ip"), current: cur,
			created: s("created_at"), lastUsed: s("last_used_at"), expires: s("expires_at")})
	}
	return out
}

func wantBearerError(t *testing.T, a answer, desc string, expired bool) {
	t.Helper()
	wantError(t, a, http.StatusUnauthorized, "invalid_token", desc)
	if ch := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
		t.Fatalf("WWW-Authenticate %q", ch)
	}
	if got := a.header.Get("Token-Expired") == "true"; got != expired {
		t.Fatalf("Token-Expired: %q, want %v", a.header.Get("Token-Expired"), expired)
	}
}

func TestSessionsListAndDelete(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t), 24*time.Hour)
		phone := e.signInAs(testUser, testPassword, "Phone/1.0")
		e.clock.Advance(time.Minute)
		laptop := e.signInAs(testUser, testPassword, "Laptop/2.0")
		e.clock.Advance(time.Minute)
		// The phone refreshes: its last use moves, its creation does not.
		phone2 := e.refresh(phone.str("refresh_token"))
		if phone2.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", phone2.status, phone2.body)
		}
		e.addUser("bob", "bobs long password")
		bob := e.signInAs("bob", "bobs long password", "Bob/1.0")

		list := e.listSessions(t, laptop.str("access_token"))
		if len(list) != 2 {
			t.Fatalf("alice sees %d sessions, want 2: %+v", len(list), list)
		}
		var phoneSess, laptopSess listedSession
		for _, s := range list {
			switch s.ua {
			case "Phone/1.0":
				phoneSess = s
			case "Laptop/2.0":
				laptopSess = s
			}
		}
		if !laptopSess.current || phoneSess.current {
			t.Fatalf("current flags wrong: %+v", list)
		}
		if phoneSess.client != publicApp || phoneSess.ip != "127.0.0.1" || phoneSess.id == "" ||
			phoneSess.created == "" || phoneSess.expires == "" || phoneSess.lastUsed <= phoneSess.created {
			t.Fatalf("phone session %+v", phoneSess)
		}
		if laptopSess.lastUsed != laptopSess.created {
			t.Fatalf("unused session: last used %s, created %s", laptopSess.lastUsed, laptopSess.created)
		}
		// The refreshed phone's new access token sees its own session as current.
		for _, s := range e.listSessions(t, phone2.str("access_token")) {
			if s.current != (s.id == phoneSess.id) {
				t.Fatalf("from the phone: %+v", s)
			}
		}

		// Bob's session, another user's: not found, exactly like a made-up id.
		bobSess := e.listSessions(t, bob.str("access_token"))
		if len(bobSess) != 1 {
			t.Fatalf("bob: %+v", bobSess)
		}
		theirs := e.bearer(http.MethodDelete, "/sessions/"+bobSess[0].id, "Bearer "+laptop.str("access_token"))
		madeUp := e.bearer(http.MethodDelete, "/sessions/"+strings.Repeat("a", 26), "Bearer "+laptop.str("access_token"))
		garbage := e.bearer(http.MethodDelete, "/sessions/..%2f..", "Bearer "+laptop.str("access_token"))
		for _, a := range []answer{theirs, madeUp, garbage} {
			wantError(t, a, http.StatusNotFound, "not_found", "no such session")
		}
		if string(theirs.body) != string(madeUp.body) {
			t.Fatalf("another user's session answers %s, a made-up id %s", theirs.body, madeUp.body)
		}
		if got := e.listSessions(t, bob.str("access_token")); len(got) != 1 {
			t.Fatalf("bob's session was touched: %+v", got)
		}

		// Alice ends her phone's session from the laptop.
		if a := e.bearer(http.MethodDelete, "/sessions/"+phoneSess.id, "Bearer "+laptop.str("access_token")); a.status != http.StatusNoContent || len(a.body) != 0 {
			t.Fatalf("DELETE: %d %s", a.status, a.body)
		}
		if !strings.Contains(e.logs.String(), `"event":"session.revoked"`) {
			t.Error("no audit event for the ended session")
		}
		wantError(t, e.refresh(phone2.str("refresh_token")), http.StatusBadRequest, "invalid_grant", "revoked")
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer "+phone2.str("access_token")), "has ended", false)
		wantError(t, e.bearer(http.MethodDelete, "/sessions/"+phoneSess.id, "Bearer "+laptop.str("access_token")), http.StatusNotFound, "not_found", "no such session")
		if got := e.listSessions(t, laptop.str("access_token")); len(got) != 1 || !got[0].current {
			t.Fatalf("after delete: %+v", got)
		}
		// And then the laptop's own: a logout; its access token stops working here.
		if a := e.bearer(http.MethodDelete, "/sessions/"+laptopSess.id, "Bearer "+laptop.str("access_token")); a.status != http.StatusNoContent {
			t.Fatalf("DELETE own: %d %s", a.status, a.body)
		}
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer "+laptop.str("access_token")), "has ended", false)
	})
}

func TestSessionsBearerRequired(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t), 24*time.Hour)
		at := e.signIn().str("access_token")

		a := e.bearer(http.MethodGet, "/sessions", "")
		wantError(t, a, http.StatusUnauthorized, "invalid_token", "required")
		if ch := a.header.Get("WWW-Authenticate"); ch != `Bearer realm="tokend"` {
			t.Fatalf("no token: WWW-Authenticate %q (RFC 6750 §3.1: no error code)", ch)
		}
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Basic "+at), "required", false)
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer not-a-jwt"), "invalid", false)
		wantBearerError(t, e.bearer(http.MethodDelete, "/sessions/"+strings.Repeat("a", 26), "Bearer "+at[:len(at)-2]+"xx"), "invalid", false)
		// A refresh token is not an access token.
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer "+e.signIn().str("refresh_token")), "invalid", false)
		// A client's own token has no sessions.
		cc := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, backendApp, e.secret)
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer "+cc.str("access_token")), "no session", false)

		if got := e.listSessions(t, at); len(got) != 2 { // the two sign-ins above
			t.Fatalf("%+v", got)
		}
		e.clock.Advance(16 * time.Minute)
		wantBearerError(t, e.bearer(http.MethodGet, "/sessions", "Bearer "+at), "expired", true)
	})
}
