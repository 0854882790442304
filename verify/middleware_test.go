package verify_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/tokend/tokend/verify"
)

// rfc6750Challenge matches a WWW-Authenticate Bearer challenge whose
// quoted values use only the characters RFC 6750 §3 allows.
var rfc6750Challenge = regexp.MustCompile(`^Bearer error="(invalid_request|invalid_token|insufficient_scope)", error_description="[\x20\x21\x23-\x5B\x5D-\x7E]+"(, scope="[\x21\x23-\x5B\x5D-\x7E]+")?$`)

type result struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, h http.Handler, auth ...string) result {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	return serve(h, req)
}

func TestMiddleware(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256, "orders")
	v := newVerifier(t, f)
	var got *verify.Claims
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, found := verify.ClaimsFrom(r.Context())
		if !found {
			t.Error("no claims in the context")
		}
		got = c
		w.WriteHeader(http.StatusTeapot)
	})
	h := v.Middleware(ok)
	tok := f.mint(t, defaultClaims)

	// Valid: the handler runs with the claims.
	if r := call(t, h, "Bearer "+tok); r.status != http.StatusTeapot || got == nil || got.Subject != "user-1" {
		t.Fatalf("valid token: %d %+v", r.status, got)
	}
	if r := call(t, h, "bearer  "+tok); r.status != http.StatusTeapot {
		t.Fatalf("lower-case scheme: %d", r.status)
	}

	// No credentials: 401 with a bare challenge (RFC 6750 §3.1).
	r := call(t, h)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" || r.header.Get("Token-Expired") != "" {
		t.Fatalf("no token: %d %v", r.status, r.header)
	}
	if _, has := r.body["error"]; has || r.body["error_description"] == "" {
		t.Fatalf("no token: body %v", r.body)
	}
	// Credentials of another scheme: invalid_token, which says so.
	r = call(t, h, "Basic dXNlcjpwYXNz")
	if r.status != http.StatusUnauthorized || !rfc6750Challenge.MatchString(r.header.Get("WWW-Authenticate")) ||
		r.body["error"] != "invalid_token" || r.body["error_description"] != "the Authorization header must carry an access token with the Bearer or DPoP scheme" {
		t.Fatalf("Basic: %d %v %v", r.status, r.header, r.body)
	}

	// Malformed header: 400 invalid_request.
	for _, auth := range [][]string{{"Bearer"}, {"Bearer "}, {"Bearer a b"}, {"Bearer " + tok, "Bearer " + tok}} {
		r := call(t, h, auth...)
		if r.status != http.StatusBadRequest || !rfc6750Challenge.MatchString(r.header.Get("WWW-Authenticate")) || r.body["error"] != "invalid_request" {
			t.Fatalf("malformed %q: %d %v %v", auth, r.status, r.header, r.body)
		}
	}

	// Invalid tokens: 401 invalid_token, no Token-Expired.
	k := f.set.Load().Signing()
	for _, bad := range []string{
		"garbage",
		tok[:len(tok)-3] + "AAA",
		forge(t, k, with(f.goodHeader(k), "typ", "JWT"), f.goodClaims()),
		forge(t, k, f.goodHeader(k), with(f.goodClaims(), "aud", "billing")),
		forge(t, k, f.goodHeader(k), with(f.goodClaims(), "iss", `https://"evil"\`, "exp", f.clock.Now().Add(-time.Hour).Unix())),
	} {
		r := call(t, h, "Bearer "+bad)
		ch := r.header.Get("WWW-Authenticate")
		if r.status != http.StatusUnauthorized || !rfc6750Challenge.MatchString(ch) || r.header.Get("Token-Expired") != "" ||
			r.body["error"] != "invalid_token" || r.body["error_description"] == "" {
			t.Fatalf("invalid token: %d %q %v %v", r.status, ch, r.header, r.body)
		}
	}

	// Expired, and otherwise valid: Token-Expired: true.
	f.clock.Advance(time.Hour)
	r = call(t, h, "Bearer "+tok)
	if r.status != http.StatusUnauthorized || r.header.Get("Token-Expired") != "true" ||
		r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token", error_description="the access token expired"` {
		t.Fatalf("expired: %d %v", r.status, r.header)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("expired: headers %v", r.header)
	}
}

func TestMiddlewareUnavailable(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	f.jwksStatus.Store(502)
	v := newVerifier(t, f)
	r := call(t, v.Middleware(http.NotFoundHandler()), "Bearer "+f.mint(t, defaultClaims))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "temporarily_unavailable" {
		t.Fatalf("%d %v %v", r.status, r.header, r.body)
	}
}

func TestRequireScopeAndRole(t *testing.T) {
	f := newFakeIssuer(t, verify.EdDSA)
	v := newVerifier(t, f)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	user := f.mint(t, defaultClaims) // scope "read write", role user
	admin := f.mint(t, tokenClaims{Subject: "root", ClientID: "web", Scope: "read admin", Roles: []string{"admin", "user"}})

	write := v.Middleware(verify.RequireScope("write")(ok))
	if r := call(t, write, "Bearer "+user); r.status != http.StatusNoContent {
		t.Fatalf("scope present: %d", r.status)
	}
	r := call(t, write, "Bearer "+admin)
	if r.status != http.StatusForbidden || r.body["error"] != "insufficient_scope" ||
		r.header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope", error_description="the access token lacks the scope write", scope="write"` {
		t.Fatalf("scope missing: %d %v %v", r.status, r.header, r.body)
	}

	adm := v.Middleware(verify.RequireRole("admin")(ok))
	if r := call(t, adm, "Bearer "+admin); r.status != http.StatusNoContent {
		t.Fatalf("role present: %d", r.status)
	}
	r = call(t, adm, "Bearer "+user)
	if r.status != http.StatusForbidden || !rfc6750Challenge.MatchString(r.header.Get("WWW-Authenticate")) ||
		r.header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope", error_description="the access token lacks the role admin"` {
		t.Fatalf("role missing: %d %v", r.status, r.header)
	}
	// Without Middleware in front: unauthenticated.
	if r := call(t, verify.RequireRole("admin")(ok), "Bearer "+admin); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no Middleware: %d %v", r.status, r.header)
	}
	// Handlers behind Middleware can be tested with NewContext.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req = req.WithContext(verify.NewContext(req.Context(), &verify.Claims{Roles: []string{"admin"}}))
	rec := httptest.NewRecorder()
	verify.RequireRole("admin")(ok).ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("NewContext: %d", rec.Code)
	}

	for _, bad := range []string{"", "a b", `a"b`, `a\b`, "é"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireRole(%q) did not panic", bad)
				}
			}()
			verify.RequireRole(bad)
		}()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireScope(%q) did not panic", bad)
				}
			}()
			verify.RequireScope(bad)
		}()
	}
}
