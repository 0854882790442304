package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
	publicApp    = "web"
	backendApp   = "backend"
	testIssuer   = "https://tokend.test"

	loginAttempts = 5 // password attempts per account and hour before 429
)

// fastArgon keeps tests quick; production uses credential.DefaultArgon2.
var fastArgon = credential.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// env is a real tokend server (httptest, real TCP) over a Redis store, with
// a user and two clients.
type env struct {
	srv    *httptest.Server
	server *server.Server
	store  store.Store
	secret string // of the confidential client "backend"
	feed   string // secret of the confidential client "feed" (events:read)
}

// sharedRedisStore is a store on the shared test Redis under a key prefix
// of this test's own.
func sharedRedisStore(t *testing.T) store.Store {
	t.Helper()
	opt, err := redis.ParseURL(testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := redisstore.New(redis.NewClient(opt), redisstore.Options{Prefix: testredis.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnv starts a server over st, with self-registration on unless an
// option turns it off.
func newEnv(t *testing.T, st store.Store, opts ...func(*server.Options)) *env {
	t.Helper()
	set, err := keys.Ephemeral(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	src := token.StaticKeys{Set: set}
	hasher := credential.NewHasher(fastArgon, 0)
	o := server.Options{
		Store: st, Tokens: token.NewIssuer(testIssuer, []string{"orders"}, 15*time.Minute, src), Keys: src,
		RefreshKeys: token.StaticRefreshKeys{Set: keys.EphemeralRefresh()},
		Passwords:   hasher, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Issuer: testIssuer,
		RefreshTTL: time.Hour, AllowSignup: true,
	}
	// The revocation feed, as serve wires it.
	var evlog events.Log = events.NewMemoryLog(time.Hour, 0, nil)
	if rs, ok := st.(*redisstore.Store); ok {
		evlog = events.NewRedisLog(rs.Redis(), testredis.Prefix(t), time.Hour, 0)
	}
	hub := events.NewHub(evlog, events.HubOptions{Issuer: testIssuer})
	hubCtx, stopHub := context.WithCancel(context.Background())
	t.Cleanup(stopHub)
	go hub.Run(hubCtx)
	raw := st
	st = events.Wrap(st, evlog, events.Options{AccessTTL: 15 * time.Minute})
	o.Store, o.Events = st, hub
	if rs, ok := raw.(*redisstore.Store); ok {
		// Brute-force protection as in production (Redis buckets), with a
		// small per-account limit the conformance test can reach.
		o.LoginLimiter = ratelimit.NewRedis(rs.Redis(), testredis.Prefix(t), ratelimit.Limits{
			PerAccount: ratelimit.Rate{N: loginAttempts, Period: time.Hour},
		})
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := server.New(servertest.Defaults(o))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: httptest.NewServer(s.Handler()), server: s, store: st}
	t.Cleanup(e.srv.Close)

	ctx := context.Background()
	now := time.Now()
	hash, err := hasher.Hash(ctx, testPassword)
	must(t, err)
	must(t, st.CreateUser(ctx, store.User{ID: token.NewID(), Username: testUser, PasswordHash: hash, Roles: []string{"user"}, CreatedAt: now, UpdatedAt: now}))
	must(t, st.CreateClient(ctx, store.Client{ID: publicApp, Public: true, Grants: []string{"password", "refresh_token"}, Scopes: []string{"read", "write"}, CreatedAt: now}))
	e.secret = credential.NewClientSecret()
	must(t, st.CreateClient(ctx, store.Client{ID: backendApp, SecretHash: credential.HashClientSecret(e.secret),
		Grants: []string{"password", "refresh_token", "client_credentials"}, Scopes: []string{"read", "write", "admin"}, CreatedAt: now}))
	e.feed = credential.NewClientSecret()
	must(t, st.CreateClient(ctx, store.Client{ID: "feed", SecretHash: credential.HashClientSecret(e.feed),
		Grants: []string{"client_credentials"}, Scopes: []string{server.EventsScope}, CreatedAt: now}))
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
