package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// startTokend runs a real tokend (server.New on the Redis store, signup
// enabled) on a local listener; its URL is its issuer.
func startTokend(t *testing.T, clk *testclock.Clock) (base string, st store.Store) {
	t.Helper()
	opt, err := redis.ParseURL(testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testredis.Prefix(t)
	rs, err := redisstore.New(redis.NewClient(opt), redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	// The revocation feed, as serve wires it.
	evlog := events.NewRedisLog(rs.Redis(), prefix, events.Retention(15*time.Minute), 0)
	st = events.Wrap(rs, evlog, events.Options{AccessTTL: 15 * time.Minute})

	set, err := keys.Ephemeral(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base = "http://" + ln.Addr().String()
	hub := events.NewHub(evlog, events.HubOptions{Issuer: base})
	hubCtx, stopHub := context.WithCancel(context.Background())
	t.Cleanup(stopHub)
	go hub.Run(hubCtx)
	src := token.StaticKeys{Set: set}
	h := credential.NewHasher(credential.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 0)
	srv, err := server.New(servertest.Defaults(server.Options{
		Store: st, Tokens: token.NewIssuer(base, []string{"orders"}, 15*time.Minute, src), Keys: src, Passwords: h,
		Events: hub,
		Logger: slog.New(slog.DiscardHandler), Issuer: base, Now: clk.Now, AllowSignup: true,
	}))
	if err != nil {
		t.Fatal(err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Handler()}}
	hs.Start()
	t.Cleanup(hs.Close)

	// An admin, as an operator makes one: tokend users create root --role admin.
	hash, err := h.Hash(context.Background(), "root-password-1")
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	ctx := context.Background()
	if err := st.CreateUser(ctx, store.User{ID: token.NewID(), Username: "root", PasswordHash: hash, Roles: []string{"admin"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateClient(ctx, store.Client{ID: "web", Public: true, Grants: []string{"password", "refresh_token"}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// The example's feed reader: tokend clients create orders --grants client_credentials --scopes events:read
	if err := st.CreateClient(ctx, store.Client{ID: "orders", SecretHash: credential.HashClientSecret(ordersSecret),
		Grants: []string{"client_credentials"}, Scopes: []string{server.EventsScope}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return base, st
}

const ordersSecret = "cs_orders-test-secret-0000000000000000000000000"

// A logout at tokend reaches the example through the revocation feed: the
// access token, still unexpired, is refused with 401 invalid_token.
func TestLogoutReachesOrders(t *testing.T) {
	tokend, _ := startTokend(t, testclock.New(time.Now()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := verify.New(ctx, tokend, verify.WithAudience("orders"), verify.WithRevocations(verify.Revocations{ClientID: "orders", ClientSecret: ordersSecret}))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	orders := httptest.NewServer(newHandler(v))
	defer orders.Close()
	r := post(t, tokend+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"root"}, "password": {"root-password-1"}})
	if r.status != http.StatusOK {
		t.Fatalf("sign in: %d %v", r.status, r.json)
	}
	at := r.str("access_token")
	if r := get(t, orders.URL+"/orders", at); r.status != http.StatusOK {
		t.Fatalf("GET /orders: %d %v", r.status, r.json)
	}
	if r := post(t, tokend+"/logout", url.Values{"client_id": {"web"}, "refresh_token": {r.str("refresh_token")}}); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %v", r.status, r.json)
	}
	for {
		r := get(t, orders.URL+"/orders", at)
		if r.status == http.StatusUnauthorized {
			if !strings.Contains(r.header.Get("WWW-Authenticate"), "revoked") {
				t.Fatalf("401 without revoked: %v", r.header)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the logged-out token was never refused")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h := get(t, orders.URL+"/healthz", ""); h.status != 200 || h.json["revocation_feed_connected"] != true {
		t.Fatalf("healthz: %d %v", h.status, h.json)
	}
}

type reply struct {
	status int
	header http.Header
	json   map[string]any
}

func (r reply) str(k string) string { s, _ := r.json[k].(string); return s }

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(body, &r.json)
	return r
}

func post(t *testing.T, u string, form url.Values) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return send(t, req)
}

func get(t *testing.T, u, accessToken string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	return send(t, req)
}

// A sibling service's story, end to end: register, sign in, call the protected
// service, be refused the admin endpoint, have the access token expire
// (401 with Token-Expired), refresh, and call again.
func TestStory4EndToEnd(t *testing.T) {
	clk := testclock.New(time.Now())
	tokend, _ := startTokend(t, clk)
	ctx := context.Background()
	v, err := verify.New(ctx, tokend, verify.WithAudience("orders"), verify.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	orders := httptest.NewServer(newHandler(v))
	defer orders.Close()

	// Register.
	r := post(t, tokend+"/users", url.Values{"username": {"dora@example.com"}, "password": {"dora's long password"}})
	if r.status != http.StatusCreated || r.str("id") == "" {
		t.Fatalf("register: %d %v", r.status, r.json)
	}
	userID := r.str("id")

	// Sign in.
	r = post(t, tokend+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"},
		"username": {"dora@example.com"}, "password": {"dora's long password"}})
	if r.status != http.StatusOK || r.json["expires_in"] != float64(900) {
		t.Fatalf("sign in: %d %v", r.status, r.json)
	}
	at, rt := r.str("access_token"), r.str("refresh_token")

	// Protected call.
	if r := get(t, orders.URL+"/orders", at); r.status != http.StatusOK || r.str("user_id") != userID {
		t.Fatalf("GET /orders: %d %v", r.status, r.json)
	}
	if r := get(t, orders.URL+"/orders", ""); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("GET /orders without a token: %d %v", r.status, r.header)
	}

	// Admin call: not an admin.
	r = get(t, orders.URL+"/admin/orders", at)
	if r.status != http.StatusForbidden || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="insufficient_scope"`) {
		t.Fatalf("GET /admin/orders: %d %v", r.status, r.header)
	}

	// The access token expires.
	clk.Advance(16 * time.Minute)
	r = get(t, orders.URL+"/orders", at)
	if r.status != http.StatusUnauthorized || r.header.Get("Token-Expired") != "true" ||
		!strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
		t.Fatalf("expired token: %d %v", r.status, r.header)
	}

	// Refresh: a new access and refresh token; the old refresh token is spent.
	r = post(t, tokend+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {rt}})
	if r.status != http.StatusOK || r.str("access_token") == "" || r.str("refresh_token") == "" || r.str("refresh_token") == rt {
		t.Fatalf("refresh: %d %v", r.status, r.json)
	}
	at2 := r.str("access_token")

	// Call again.
	if r := get(t, orders.URL+"/orders", at2); r.status != http.StatusOK || r.str("user_id") != userID {
		t.Fatalf("GET /orders after refresh: %d %v", r.status, r.json)
	}
	if r := post(t, tokend+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {rt}}); r.status != http.StatusBadRequest {
		t.Fatalf("old refresh token: %d %v", r.status, r.json)
	}

	// An admin gets the admin endpoint.
	r = post(t, tokend+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"root"}, "password": {"root-password-1"}})
	if r.status != http.StatusOK {
		t.Fatalf("admin sign in: %d %v", r.status, r.json)
	}
	if r := get(t, orders.URL+"/admin/orders", r.str("access_token")); r.status != http.StatusOK || r.str("admin") == "" {
		t.Fatalf("GET /admin/orders as admin: %d %v", r.status, r.json)
	}
}

// run serves until its context ends.
func TestRun(t *testing.T) {
	tokend, _ := startTokend(t, testclock.New(time.Now()))
	addr := testredis.FreeAddr(t)
	serveOnce := func(issuer, tok string, want int) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- run(ctx, addr, issuer, slog.New(slog.DiscardHandler), verify.WithAudience("orders")) }()
		deadline := time.Now().Add(5 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/orders", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != want || (want == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "") {
					t.Fatalf("GET /orders: %d, want %d", resp.StatusCode, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	serveOnce(tokend, "", http.StatusUnauthorized)
	// Started before tokend: it serves, and answers 503 until it can
	// read tokend's keys.
	serveOnce("http://127.0.0.1:1", unknownKeyToken, http.StatusServiceUnavailable)
}

// unknownKeyToken is a well-formed access token of an unknown key: checking
// it needs the JWKS.
const unknownKeyToken = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.e30.AAAA"
