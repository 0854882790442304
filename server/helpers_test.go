package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// env is one tokend server over one store, with a user and clients.
type env struct {
	t      testing.TB
	srv    *httptest.Server
	server *server.Server
	store  store.Store
	issuer *token.Issuer
	keys   *keys.Set // the signing keys, for forging tokens
	// refresher holds the server's refresh keys: tests derive genuine
	// tokens of any generation with it (as a server would).
	refresher *token.Refresher
	clock     *testclock.Clock
	hasher    server.PasswordHasher
	logs      *testkit.SyncBuffer

	userID string
	secret string // secret of the confidential client "backend"
}

// defaultReuseWindow is REFRESH_REUSE_WINDOW's default, which newEnv uses.
const defaultReuseWindow = 30 * time.Second

// window sets the server's REFRESH_REUSE_WINDOW (newEnv option).
func window(w time.Duration) func(*server.Options) {
	return func(o *server.Options) { o.ReuseWindow = w }
}

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
	publicApp    = "web"
	backendApp   = "backend"
	testIssuer   = "https://tokend.test"
)

// backends runs f against real Redis and the embedded store.
func backends(t *testing.T, f func(t *testing.T, newStore func(t *testing.T) store.Store)) {
	t.Run("redis", func(t *testing.T) { f(t, func(t *testing.T) store.Store { return redisStore(t) }) })
	t.Run("memory", func(t *testing.T) {
		f(t, func(t *testing.T) store.Store { return newMemStore(t) })
	})
}

func newMemStore(t testing.TB) store.Store {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	return st
}

func redisStore(t testing.TB) store.Store {
	t.Helper()
	opt, err := redis.ParseURL(testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: testredis.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fastArgon keeps tests quick; production uses credential.DefaultArgon2.
var fastArgon = credential.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// newEnv builds the env; opts may change the server's options.
func newEnv(t testing.TB, st store.Store, refreshTTL time.Duration, opts ...func(*server.Options)) *env {
	t.Helper()
	set, err := keys.Ephemeral(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	src := token.StaticKeys{Set: set}
	rsrc := token.StaticRefreshKeys{Set: keys.EphemeralRefresh()}
	clk := testclock.New(time.Now())
	e := &env{t: t, store: st, keys: set, refresher: token.NewRefresher(rsrc), clock: clk,
		hasher: &countingHasher{PasswordHasher: credential.NewHasher(fastArgon, 0)}, logs: &testkit.SyncBuffer{}}
	e.issuer = token.NewIssuer(testIssuer, []string{"orders"}, 15*time.Minute, src)
	o := server.Options{
		Store: st, Tokens: e.issuer, Keys: src, RefreshKeys: rsrc, Passwords: e.hasher,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Issuer: testIssuer, RefreshTTL: refreshTTL, Now: clk.Now,
		ReuseWindow: defaultReuseWindow,
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := server.New(servertest.Defaults(o))
	if err != nil {
		t.Fatal(err)
	}
	e.server = s
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)

	ctx := context.Background()
	e.userID = e.addUser(testUser, testPassword, "user")
	must(t, st.CreateClient(ctx, store.Client{ID: publicApp, Public: true, Grants: []string{"password", "refresh_token"}, Scopes: []string{"read", "write"}, CreatedAt: clk.Now()}))
	e.secret = credential.NewClientSecret()
	must(t, st.CreateClient(ctx, store.Client{ID: backendApp, SecretHash: credential.HashClientSecret(e.secret),
		Grants: []string{"password", "refresh_token", "client_credentials"}, Scopes: []string{"read", "write", "admin"}, CreatedAt: clk.Now()}))
	return e
}

func (e *env) addUser(name, password string, roles ...string) string {
	e.t.Helper()
	hash, err := e.hasher.Hash(context.Background(), password)
	must(e.t, err)
	id := token.NewID()
	must(e.t, e.store.CreateUser(context.Background(), store.User{ID: id, Username: name, PasswordHash: hash, Roles: roles, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}))
	return id
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// answer is a decoded HTTP response.
type answer struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (a answer) str(k string) string { s, _ := a.json[k].(string); return s }

func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	_ = json.Unmarshal(body, &a.json)
	return a
}

// post sends a form; opts may set HTTP Basic with "basic:ID:SECRET".
func (e *env) post(path string, form url.Values, basic ...string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	must(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(basic[0])+":"+url.QueryEscape(basic[1]))))
	}
	return e.do(req)
}

func (e *env) postJSON(path, body string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	must(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	return e.do(req)
}

func (e *env) get(path string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	must(e.t, err)
	return e.do(req)
}

// signIn runs the password grant for the public client.
func (e *env) signIn() answer {
	e.t.Helper()
	a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}})
	if a.status != http.StatusOK {
		e.t.Fatalf("sign in: %d %s", a.status, a.body)
	}
	return a
}

// derive returns generation gen of the session rt belongs to, as the
// server would derive it.
func (e *env) derive(rt string, gen uint64) string {
	e.t.Helper()
	p, err := e.refresher.Verify(rt)
	must(e.t, err)
	tok, err := e.refresher.Derive(p, gen)
	must(e.t, err)
	return tok
}

// parsed returns what a genuine refresh token says.
func (e *env) parsed(rt string) token.Refresh {
	e.t.Helper()
	p, err := e.refresher.Verify(rt)
	must(e.t, err)
	return p
}

// tamper changes one character in the middle of rt's MAC: the token keeps
// its shape but is no longer genuine.
func tamper(rt string) string {
	b := []byte(rt)
	i := len(b) - 20
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func (e *env) refresh(rt string) answer {
	e.t.Helper()
	return e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}})
}

// wantError asserts an RFC 6749 §5.2 error answer.
func wantError(t *testing.T, a answer, status int, code, descContains string) {
	t.Helper()
	if a.status != status || a.str("error") != code {
		t.Fatalf("got %d %s, want %d error=%s", a.status, a.body, status, code)
	}
	if !strings.Contains(a.str("error_description"), descContains) {
		t.Fatalf("error_description %q does not contain %q", a.str("error_description"), descContains)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
}

// countingHasher counts the password work the server asks for.
type countingHasher struct {
	server.PasswordHasher
	hashes, verifies, dummies atomic.Int64
}

func (c *countingHasher) Hash(ctx context.Context, pw string) (string, error) {
	c.hashes.Add(1)
	return c.PasswordHasher.Hash(ctx, pw)
}

func (c *countingHasher) Verify(ctx context.Context, pw, enc string) (bool, error) {
	c.verifies.Add(1)
	return c.PasswordHasher.Verify(ctx, pw, enc)
}

func (c *countingHasher) VerifyDummy(ctx context.Context, pw string) {
	c.dummies.Add(1)
	c.PasswordHasher.VerifyDummy(ctx, pw)
}

func (e *env) routes() []string { return e.server.Routes() }
