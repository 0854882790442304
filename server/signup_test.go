package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// signupEnv is newEnv with self-registration set as given and the hasher
// given (nil: the fast test hasher).
func signupEnv(t *testing.T, st store.Store, allow bool, h server.PasswordHasher) *env {
	t.Helper()
	set, err := keys.Ephemeral(verify.ES256)
	must(t, err)
	src := token.StaticKeys{Set: set}
	if h == nil {
		h = credential.NewHasher(fastArgon, 0)
	}
	e := &env{t: t, store: st, clock: testclock.New(time.Now()), hasher: h, logs: &testkit.SyncBuffer{}}
	e.issuer = token.NewIssuer(testIssuer, nil, 15*time.Minute, src)
	s, err := server.New(servertest.Defaults(server.Options{
		Store: st, Tokens: e.issuer, Keys: src, RefreshKeys: token.StaticRefreshKeys{Set: keys.EphemeralRefresh()}, Passwords: h,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Issuer: testIssuer, Now: e.clock.Now,
		AllowSignup: allow,
	}))
	must(t, err)
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	must(t, st.CreateClient(context.Background(), store.Client{ID: publicApp, Public: true, Grants: []string{"password", "refresh_token"}, CreatedAt: time.Now()}))
	return e
}

func TestSignupDisabledIs404(t *testing.T) {
	e := signupEnv(t, redisStore(t), false, nil)
	unknown := e.post("/no-such-path", url.Values{})
	for _, a := range []answer{
		e.post("/users", url.Values{"username": {"bob"}, "password": {"a fine long password"}}),
		e.get("/users"),
	} {
		if a.status != http.StatusNotFound || string(a.body) != string(unknown.body) ||
			a.header.Get("Content-Type") != unknown.header.Get("Content-Type") {
			t.Fatalf("disabled signup: %d %q, want the unknown-path answer %d %q", a.status, a.body, unknown.status, unknown.body)
		}
	}
}

func TestSignup(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := signupEnv(t, newStore(t), true, nil)

		a := e.post("/users", url.Values{"username": {"Bob"}, "password": {"a fine long password"}})
		if a.status != http.StatusCreated || a.str("username") != "bob" || len(a.str("id")) != 26 {
			t.Fatalf("signup: %d %s", a.status, a.body)
		}
		if a.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("headers %v", a.header)
		}
		if len(a.json) != 2 {
			t.Fatalf("answer has more than id and username: %s", a.body)
		}
		u, err := e.store.UserByName(context.Background(), "bob")
		must(t, err)
		if u.ID != a.str("id") || len(u.Roles) != 0 || u.Disabled || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Fatalf("stored user %+v", u)
		}
		if !strings.Contains(e.logs.String(), `"event":"user.signup"`) || strings.Contains(e.logs.String(), "a fine long password") {
			t.Fatalf("audit log:\n%s", e.logs.String())
		}

		// The new user signs in.
		tok := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {"bob"}, "password": {"a fine long password"}})
		if tok.status != http.StatusOK {
			t.Fatalf("sign in: %d %s", tok.status, tok.body)
		}
		_, claims := testkit.Decode(t, tok.str("access_token"))
		if claims["sub"] != u.ID {
			t.Fatalf("sub %v", claims["sub"])
		}

		// JSON, with an email address.
		a = e.postJSON("/users", `{"email":"carol@example.com","password":"correct horse battery"}`)
		if a.status != http.StatusCreated || a.str("username") != "carol@example.com" {
			t.Fatalf("JSON signup: %d %s", a.status, a.body)
		}

		// A taken name, in any case: 409.
		for _, name := range []string{"Bob", "BOB", "bob"} {
			a = e.post("/users", url.Values{"username": {name}, "password": {"another long password"}})
			wantError(t, a, http.StatusConflict, "username_taken", "already taken")
		}
		a = e.postJSON("/users", `{"username":"CAROL@example.com","password":"another long password"}`)
		wantError(t, a, http.StatusConflict, "username_taken", "already taken")
		// A name that looks like a taken one (UTS #39 skeleton): 409 too,
		// whether in one other script or with digits for letters.
		if a = e.post("/users", url.Values{"username": {"ace"}, "password": {"another long password"}}); a.status != http.StatusCreated {
			t.Fatalf("signup ace: %d %s", a.status, a.body)
		}
		for _, name := range []string{"\u0430\u0441\u0435", "b0b", "B0B"} {
			a = e.post("/users", url.Values{"username": {name}, "password": {"another long password"}})
			wantError(t, a, http.StatusConflict, "username_taken", "looks like one that is already taken")
		}
		// Digits and marks of another script in a name: 400.
		for _, name := range []string{"b\u0966\u0966k", "do\u05c5t"} {
			a = e.post("/users", url.Values{"username": {name}, "password": {"another long password"}})
			wantError(t, a, http.StatusBadRequest, "invalid_request", "mixes characters of two scripts")
		}

		// Only POST.
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/users", nil)
		if a := e.do(req); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "POST" {
			t.Fatalf("GET /users: %d %v", a.status, a.header)
		}
	})
}

func TestSignupValidation(t *testing.T) {
	e := signupEnv(t, redisStore(t), true, nil)
	long := strings.Repeat("ab", 129) // 258 characters
	tests := []struct {
		form url.Values
		desc string
	}{
		{url.Values{"password": {"a fine long password"}}, `missing parameter "username" (or "email")`},
		{url.Values{"username": {"dave"}}, `missing parameter "password"`},
		{url.Values{"username": {"dave"}, "email": {"dave@example.com"}, "password": {"a fine long password"}}, `not both`},
		{url.Values{"email": {"dave"}, "password": {"a fine long password"}}, "must be an email address"},
		{url.Values{"email": {"dave@"}, "password": {"a fine long password"}}, "must be an email address"},
		{url.Values{"email": {"@example.com"}, "password": {"a fine long password"}}, "must be an email address"},
		{url.Values{"username": {"da ve"}, "password": {"a fine long password"}}, "must not contain spaces, control characters"},
		{url.Values{"username": {"dave\x01"}, "password": {"a fine long password"}}, "must not contain spaces, control characters"},
		{url.Values{"username": {"dave\xff"}, "password": {"a fine long password"}}, "valid UTF-8"},
		{url.Values{"username": {strings.Repeat("d", 255)}, "password": {"a fine long password"}}, "at most 254 bytes"},
		{url.Values{"username": {"dave"}, "password": {"too-short"}}, "password must be at least 10 characters"},
		{url.Values{"username": {"dave"}, "password": {"ééééééééé"}}, "at least 10 characters"}, // 18 bytes, 9 characters
		{url.Values{"username": {"dave"}, "password": {long}}, "password must be at most 256 characters"},
		{url.Values{"username": {"dave"}, "password": {strings.Repeat("€", 342)}}, "password must be at most 1024 bytes"},
		{url.Values{"username": {"dave"}, "password": {"abcdefghi\xff"}}, "password must be valid UTF-8"},
		{url.Values{"username": {"Dave.Smith42"}, "password": {"dave.smith42"}}, "password must not be the same as the username"},
		{url.Values{"username": {"dave"}, "password": {"aaaaaaaaaaaa"}}, "password must not be one character repeated"},
		{url.Values{"username": {"dave"}, "password": {"            "}}, "password must not be one character repeated"},
		{url.Values{"username": {"dave"}, "password": {"Password1!"}}, "password is on a list of commonly used passwords"},
		{url.Values{"username": {"dave"}, "password": {"password12"}}, "password is on a list of commonly used passwords"},
	}
	for _, tt := range tests {
		a := e.post("/users", tt.form)
		wantError(t, a, http.StatusBadRequest, "invalid_request", tt.desc)
	}
	// Boundaries that pass: exactly 10 and 256 characters; multi-byte
	// characters count once.
	for i, pw := range []string{"abcdefghiz", strings.Repeat("ab", 128), "éàéàéàéàéà"} {
		a := e.post("/users", url.Values{"username": {"ok" + string(rune('a'+i))}, "password": {pw}})
		if a.status != http.StatusCreated {
			t.Fatalf("password of %d characters: %d %s", len([]rune(pw)), a.status, a.body)
		}
	}
	// Credentials never in the query string.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/users?password=x", strings.NewReader("username=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantError(t, e.do(req), http.StatusBadRequest, "invalid_request", "not in the URL query")
}

// A taken name costs the same argon2id work as a free one: the password is
// hashed before the name is claimed.
// A taken name costs the same argon2id work as a free one (the password is
// hashed before the name is checked), so timing does not reveal which names
// exist beyond the 409 itself. Counted, not timed: timing is noise on CI.
func TestSignupTakenNameSpendsHashCost(t *testing.T) {
	h := &countingHasher{PasswordHasher: credential.NewHasher(fastArgon, 0)}
	e := signupEnv(t, redisStore(t), true, h)
	form := url.Values{"username": {"erin"}, "password": {"a fine long password"}}
	if a := e.post("/users", form); a.status != http.StatusCreated {
		t.Fatalf("signup: %d %s", a.status, a.body)
	}
	for i := int64(2); i <= 4; i++ {
		if a := e.post("/users", form); a.status != http.StatusConflict {
			t.Fatalf("second signup: %d %s", a.status, a.body)
		}
		if got := h.hashes.Load(); got != i {
			t.Fatalf("after %d signups with a taken name, %d password hashes; want one per request", i, got)
		}
	}
}
