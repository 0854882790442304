package server_test

// Requests real third-party clients and frontends send: a
// Bearer header on /logout and /oauth/revoke, duplicate JSON keys, and the
// headers every JSON answer carries.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
)

// postBearer posts a form with "Authorization: Bearer tok".
func (e *env) postBearer(path string, form url.Values, tok string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	must(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tok)
	return e.do(req)
}

// A frontend that sends its access token out of habit still revokes and
// logs out: a non-Basic Authorization header does not break a request
// whose body identifies the client.
func TestBearerHeaderWithClientInBody(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		a := e.signIn()
		// POST /oauth/revoke, Authorization: Bearer <access token>, body token=<refresh token>&client_id=web
		if r := e.postBearer("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {a.str("refresh_token")}}, a.str("access_token")); r.status != 200 {
			t.Fatalf("revoke with a Bearer header: %d %s", r.status, r.body)
		}
		wantError(t, e.refresh(a.str("refresh_token")), 400, "invalid_grant", "revoked")

		b := e.signIn()
		// POST /logout, Authorization: Bearer <access token>, body refresh_token=<refresh token>&client_id=web
		if r := e.postBearer("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {b.str("refresh_token")}}, b.str("access_token")); r.status != 204 {
			t.Fatalf("logout with a Bearer header: %d %s", r.status, r.body)
		}
		wantError(t, e.refresh(b.str("refresh_token")), 400, "invalid_grant", "revoked")

		// Another scheme is not client authentication either.
		c := e.signIn()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth/revoke", strings.NewReader(url.Values{"client_id": {publicApp}, "token": {c.str("refresh_token")}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "DPoP abc")
		if r := e.do(req); r.status != 200 {
			t.Fatalf("revoke with a DPoP header: %d %s", r.status, r.body)
		}
		// Without a client in the body, revocation still needs one (RFC 7009 §2.1).
		wantError(t, e.postBearer("/oauth/revoke", url.Values{"token": {c.str("refresh_token")}}, c.str("access_token")), 401, "invalid_client", "client_id")
	})
}

// POST /logout with only "Authorization: Bearer <refresh token>" (user
// story 2's shape), or a Bearer access token of the session, ends that
// session.
func TestLogoutWithBearerToken(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		other := e.signIn().str("refresh_token")

		a := e.signIn()
		if r := e.postBearer("/logout", url.Values{}, a.str("refresh_token")); r.status != 204 {
			t.Fatalf("logout with Bearer <refresh token>: %d %s", r.status, r.body)
		}
		wantError(t, e.refresh(a.str("refresh_token")), 400, "invalid_grant", "revoked")

		b := e.signIn()
		if r := e.postBearer("/logout", url.Values{}, b.str("access_token")); r.status != 204 {
			t.Fatalf("logout with Bearer <access token>: %d %s", r.status, r.body)
		}
		wantError(t, e.refresh(b.str("refresh_token")), 400, "invalid_grant", "revoked")
		// With client_id in the body, too.
		c := e.signIn()
		if r := e.postBearer("/logout", url.Values{"client_id": {publicApp}}, c.str("access_token")); r.status != 204 {
			t.Fatalf("logout with Bearer <access token> and client_id: %d %s", r.status, r.body)
		}
		wantError(t, e.refresh(c.str("refresh_token")), 400, "invalid_grant", "revoked")

		// An access token ends only its own session.
		d := e.signIn()
		wantError(t, e.postBearer("/logout", url.Values{"scope": {"global"}}, d.str("access_token")), 400, "invalid_request", "refresh token")
		if r := e.refresh(other); r.status != 200 {
			t.Fatalf("an unrelated session ended: %d %s", r.status, r.body)
		}
		// Garbage, and no token at all.
		wantError(t, e.postBearer("/logout", url.Values{"client_id": {publicApp}}, "not-a-token"), 400, "invalid_grant", "")
		wantError(t, e.postBearer("/logout", url.Values{}, "not-a-token"), 401, "invalid_client", "")
		wantError(t, e.post("/logout", url.Values{"client_id": {publicApp}}), 400, "invalid_request", "refresh_token")

		// A confidential client's token still needs the client's credentials.
		bk := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, backendApp, e.secret)
		if bk.status != 200 {
			t.Fatalf("backend sign in: %d %s", bk.status, bk.body)
		}
		wantError(t, e.postBearer("/logout", url.Values{}, bk.str("refresh_token")), 401, "invalid_client", "")
		wantError(t, e.postBearer("/logout", url.Values{}, bk.str("access_token")), 401, "invalid_client", "")
		if r := e.post("/logout", url.Values{"refresh_token": {bk.str("refresh_token")}}, backendApp, e.secret); r.status != 204 {
			t.Fatalf("backend logout: %d %s", r.status, r.body)
		}
	})
}

// Every answer, JSON or not, success or error, carries
// X-Content-Type-Options: nosniff; the metadata advertises no
// response_types_supported (tokend has no authorization endpoint, and RFC
// 8414 §3.2 omits empty claims).
func TestNosniffAndMetadata(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.signIn()
	answers := map[string]answer{
		"token":    a,
		"error":    e.refresh("rt_garbage"),
		"jwks":     e.get("/.well-known/jwks.json"),
		"metadata": e.get("/.well-known/oauth-authorization-server"),
		"healthz":  e.get("/healthz"),
		"revoke":   e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {"x"}}),
		"404":      e.get("/nowhere"),
	}
	for name, ans := range answers {
		if got := ans.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", name, got)
		}
	}
	md := answers["metadata"].json
	if _, ok := md["response_types_supported"]; ok {
		t.Errorf("metadata has response_types_supported %v; an empty claim must be omitted (RFC 8414 §3.2)", md["response_types_supported"])
	}
	if md["token_endpoint"] != testIssuer+"/oauth/token" {
		t.Errorf("metadata: %s", answers["metadata"].body)
	}
}

// CORS (CORS_ALLOWED_ORIGINS): preflights from a listed origin are answered
// for the browser endpoints, with credentials allowed and the exact origin
// echoed; other origins and the server-to-server endpoints get no CORS
// headers. TestCORSFromAnotherOrigin (package api) runs a real browser.
func TestCORSHeaders(t *testing.T) {
	const app = "https://app.example.com"
	e := newEnv(t, redisStore(t), time.Hour, func(o *server.Options) { o.CORSAllowedOrigins = []string{app} })
	preflight := func(path, origin, method, headers string) answer {
		req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		return e.do(req)
	}
	for _, p := range []string{"/oauth/token", "/oauth/revoke", "/logout", "/users", "/sessions", "/sessions/abc"} {
		method := "POST"
		if strings.HasPrefix(p, "/sessions/") {
			method = "DELETE"
		}
		a := preflight(p, app, method, "authorization,content-type")
		if a.status >= 300 || a.header.Get("Access-Control-Allow-Origin") != app || a.header.Get("Access-Control-Allow-Credentials") != "true" ||
			!strings.Contains(strings.ToLower(a.header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Errorf("preflight %s from %s: %d %v", p, app, a.status, a.header)
		}
		if b := preflight(p, "https://evil.example.com", method, "content-type"); b.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight %s from another origin allowed: %v", p, b.header)
		}
	}
	for _, p := range []string{"/oauth/introspect", "/.well-known/jwks.json"} {
		if a := preflight(p, app, "POST", ""); a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s has CORS headers: %v", p, a.header)
		}
	}
	// The actual request carries the headers too, and exposes X-Request-Id.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth/token", strings.NewReader(url.Values{
		"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", app)
	a := e.do(req)
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != app || !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("sign in from %s: %d %v", app, a.status, a.header)
	}
	// Without CORS_ALLOWED_ORIGINS, nothing.
	plain := newEnv(t, redisStore(t), time.Hour)
	req, _ = http.NewRequest(http.MethodOptions, plain.srv.URL+"/oauth/token", nil)
	req.Header.Set("Origin", app)
	req.Header.Set("Access-Control-Request-Method", "POST")
	if a := plain.do(req); a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS headers with no allowed origins: %v", a.header)
	}
}

// One spelling per account (PRECIS UsernameCaseMapped, shared with the
// CLI): look-alikes of a name are that name, or refused; "İx" does not
// squat "ix"; and sign-in accepts any spelling of the name.
func TestUsernameLookalikes(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := signupEnv(t, newStore(t), true, nil)
		signup := func(name string) answer {
			return e.post("/users", url.Values{"username": {name}, "password": {"a fine long password"}})
		}
		if a := signup("Ａｌｉｃｅ2"); a.status != http.StatusCreated || a.str("username") != "alice2" {
			t.Fatalf("fullwidth signup: %d %s", a.status, a.body)
		}
		for _, same := range []string{"alice2", "ALICE2", "ａｌｉｃｅ２"} {
			if a := signup(same); a.status != http.StatusConflict {
				t.Errorf("signup %q beside alice2: %d %s", same, a.status, a.body)
			}
		}
		if a := signup("jos\u00e9"); a.status != http.StatusCreated { // NFC é
			t.Fatalf("josé: %d %s", a.status, a.body)
		}
		if a := signup("jose\u0301"); a.status != http.StatusConflict { // NFD é
			t.Errorf("NFD josé beside NFC josé: %d %s", a.status, a.body)
		}
		for _, bad := range []string{"ali\u200bce", "b\u043eb", "\u2665"} { // zero-width space, Cyrillic о, a symbol
			wantError(t, signup(bad), http.StatusBadRequest, "invalid_request", "username")
		}
		if a := signup("İx"); a.status != http.StatusCreated {
			t.Fatalf("İx: %d %s", a.status, a.body)
		}
		if a := signup("ix"); a.status != http.StatusCreated {
			t.Errorf("ix after İx: %d %s", a.status, a.body)
		}
		for _, spelling := range []string{"alice2", "ALICE2", "Ａｌｉｃｅ2"} {
			a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {spelling}, "password": {"a fine long password"}})
			if a.status != http.StatusOK {
				t.Errorf("sign in as %q: %d %s", spelling, a.status, a.body)
			}
		}
	})
}

// signin.failure never logs what was typed as a username unless it names
// an existing account: a name that matches none — a passphrase with
// spaces, 60 KB of junk, or a password typed into the username field,
// which is a perfectly valid username — is logged as account_known=false.
// An existing account is named by its id and stored name.
func TestSigninFailureLogsNoRawUsername(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	junk := "my secret passphrase\n" + strings.Repeat("x", 60<<10)
	a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {junk}, "password": {"whatever"}})
	wantError(t, a, http.StatusBadRequest, "invalid_grant", "invalid username or password")
	// The password in the username field, then in the right one.
	e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {"Tr0ub4dor-and-3"}, "password": {"alice"}})
	e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {"Tr0ub4dor-and-4"}})
	logs := e.logs.String()
	for _, typed := range []string{"secret passphrase", "xxxxxxxxxxxxxxxx", "tr0ub4dor", "Tr0ub4dor"} {
		if strings.Contains(logs, typed) {
			t.Fatalf("the typed %q reached the log: %s", typed, logs)
		}
	}
	if strings.Count(logs, `"account_known":false`) != 2 || !strings.Contains(logs, `"username":"alice"`) ||
		!strings.Contains(logs, `"user_id":"`+e.userID+`"`) {
		t.Fatalf("signin.failure lines: %s", logs)
	}
	if len(logs) > 16<<10 {
		t.Fatalf("%d bytes of log for three failed sign-ins", len(logs))
	}
}

// Every field a request puts on its log line is bounded: a 15,001-byte
// unknown path (and a long method) make a line of about a kilobyte, not
// 15 KB, and the line says how long the path was.
func TestLogLinesAreBounded(t *testing.T) {
	e := newEnv(t, newMemStore(t), time.Hour)
	path := "/" + strings.Repeat("é", 7500) // 15,001 bytes
	req, err := http.NewRequest(strings.Repeat("M", 4000), e.srv.URL+path, nil)
	must(t, err)
	a := e.do(req)
	if a.status != http.StatusNotFound && a.status != http.StatusMethodNotAllowed {
		t.Fatalf("status %d", a.status)
	}
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		if len(line) > 2<<10 {
			t.Fatalf("a %d-byte log line for one request: %.300s…", len(line), line)
		}
		if !strings.Contains(line, "(15001 bytes)") {
			t.Fatalf("the line does not say the path was cut: %s", line)
		}
		return
	}
	t.Fatalf("no request line: %s", e.logs.String())
}
