package server_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// liveTokend is a real tokend server (server.New over the Redis store) on an
// httptest listener whose URL is its issuer.
type liveTokend struct {
	url   string
	store store.Store
}

func startLiveTokend(t *testing.T, src token.KeySource, jwksMaxAge time.Duration) *liveTokend {
	t.Helper()
	opt, err := redis.ParseURL(testredis.URL(t))
	must(t, err)
	st, err := redisstore.New(redis.NewClient(opt), redisstore.Options{Prefix: testredis.Prefix(t)})
	must(t, err)
	t.Cleanup(func() { st.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	base := "http://" + ln.Addr().String()
	h := credential.NewHasher(credential.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 0)
	srv, err := server.New(servertest.Defaults(server.Options{
		Store: st, Tokens: token.NewIssuer(base, []string{"orders"}, 15*time.Minute, src), Keys: src, RefreshKeys: token.StaticRefreshKeys{Set: keys.EphemeralRefresh()},
		Passwords: h, Logger: slog.New(slog.DiscardHandler), Issuer: base, JWKSMaxAge: jwksMaxAge,
	}))
	must(t, err)
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Handler()}}
	hs.Start()
	t.Cleanup(hs.Close)

	ctx := context.Background()
	hash, err := h.Hash(ctx, "correct horse battery")
	must(t, err)
	now := time.Now()
	must(t, st.CreateUser(ctx, store.User{ID: token.NewID(), Username: "alice", PasswordHash: hash, Roles: []string{"admin"}, CreatedAt: now, UpdatedAt: now}))
	must(t, st.CreateClient(ctx, store.Client{ID: "web", Public: true, Grants: []string{"password", "refresh_token"}, Scopes: []string{"read"}, CreatedAt: now}))
	must(t, st.CreateClient(ctx, store.Client{ID: "svc", SecretHash: credential.HashClientSecret("svc-secret"), Grants: []string{"client_credentials"}, Scopes: []string{"read"}, CreatedAt: now}))
	return &liveTokend{url: base, store: st}
}

// token posts a token request and returns the access token.
func (td *liveTokend) token(t testing.TB, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(td.url+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	at, _ := m["access_token"].(string)
	if resp.StatusCode != http.StatusOK || at == "" {
		t.Fatalf("token request: %d %s", resp.StatusCode, body)
	}
	return at
}

func (td *liveTokend) signIn(t testing.TB) string {
	return td.token(t, url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"correct horse battery"}})
}

func (td *liveTokend) clientToken(t testing.TB) string {
	return td.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"svc-secret"}})
}

// tokend's tokens verify with an independent JOSE implementation
// (lestrrat-go/jwx) through the published JWKS, for every algorithm, and
// with this package.
func TestInteropJWX(t *testing.T) {
	for _, alg := range []string{verify.ES256, verify.EdDSA, verify.RS256} {
		t.Run(alg, func(t *testing.T) {
			set, err := keys.Ephemeral(alg)
			must(t, err)
			td := startLiveTokend(t, token.StaticKeys{Set: set}, 0)
			ctx := context.Background()

			jwks, err := jwk.Fetch(ctx, td.url+"/.well-known/jwks.json")
			must(t, err)
			if jwks.Len() != 1 {
				t.Fatalf("JWKS has %d keys", jwks.Len())
			}
			key, _ := jwks.Key(0)
			kid, _ := key.KeyID()
			tp, err := key.Thumbprint(crypto.SHA256)
			must(t, err)
			if kid != set.Current().ID || base64.RawURLEncoding.EncodeToString(tp) != kid {
				t.Fatalf("kid %q is not jwx's RFC 7638 thumbprint %q", kid, base64.RawURLEncoding.EncodeToString(tp))
			}

			v, err := verify.New(ctx, td.url, verify.WithAudience("orders"))
			must(t, err)
			for _, tok := range []string{td.signIn(t), td.clientToken(t)} {
				parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(jwks), jwt.WithValidate(true),
					jwt.WithIssuer(td.url), jwt.WithAudience("orders"))
				if err != nil {
					t.Fatalf("jwx refuses tokend's token: %v", err)
				}
				msg, err := jws.Parse([]byte(tok))
				must(t, err)
				hdr := msg.Signatures()[0].ProtectedHeaders()
				if typ, _ := hdr.Type(); typ != "at+jwt" {
					t.Fatalf("typ %q", typ)
				}
				if hk, _ := hdr.KeyID(); hk != kid {
					t.Fatalf("header kid %q", hk)
				}
				if a, _ := hdr.Algorithm(); a.String() != alg {
					t.Fatalf("header alg %v", a)
				}
				sub, _ := parsed.Subject()
				jti, _ := parsed.JwtID()
				c, err := v.Verify(ctx, tok)
				must(t, err)
				if c.Subject != sub || c.ID != jti {
					t.Fatalf("jwx and verify disagree: %s/%s vs %s/%s", sub, jti, c.Subject, c.ID)
				}
				var raw []any
				must(t, parsed.Get("roles", &raw))
				roles := []string{}
				for _, r := range raw {
					roles = append(roles, r.(string))
				}
				if !slices.Equal(roles, c.Roles) {
					t.Fatalf("roles: jwx %v, verify %v", roles, c.Roles)
				}

				// A tampered token fails in jwx too.
				parts := strings.Split(tok, ".")
				forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+td.url+`","sub":"root","aud":["orders"],"exp":9999999999}`)) + "." + parts[2]
				if _, err := jwt.Parse([]byte(forged), jwt.WithKeySet(jwks)); err == nil {
					t.Fatal("jwx accepts a tampered token")
				}
			}
		})
	}
}
