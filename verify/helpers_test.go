package verify_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/token"
)

// fakeIssuer serves what a verifier reads from tokend — the RFC 8414
// metadata and the JWKS — and signs tokens with tokend's token.Issuer.
type fakeIssuer struct {
	srv   *httptest.Server
	url   string
	clock *testclock.Clock
	iss   *token.Issuer

	set          atomic.Pointer[keys.Set]
	cacheControl atomic.Pointer[string] // of the JWKS; "" = none
	age          atomic.Pointer[string] // Age header of the JWKS; nil or "" = none
	jwksOverride atomic.Pointer[[]byte] // served instead of the set's JWKS
	jwksStatus   atomic.Int32           // 0 = 200
	fetches      atomic.Int64           // JWKS requests
	gate         atomic.Pointer[chan struct{}]
}

// Keys makes fakeIssuer a token.KeySource.
func (f *fakeIssuer) Keys() *keys.Set { return f.set.Load() }

var (
	keyMu    sync.Mutex
	keyCache = map[string]*keys.Set{}
)

// testSet returns one cached single-key set per alg and name.
func testSet(t testing.TB, alg, name string) *keys.Set {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if s, ok := keyCache[alg+name]; ok {
		return s
	}
	s, err := keys.Ephemeral(alg)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[alg+name] = s
	return s
}

func newFakeIssuer(t testing.TB, alg string, aud ...string) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{clock: testclock.New(time.Now().Truncate(time.Second))}
	f.set.Store(testSet(t, alg, "a"))
	cc := "public, max-age=300"
	f.cacheControl.Store(&cc)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": f.url, "jwks_uri": f.url + "/.well-known/jwks.json"})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		if g := f.gate.Load(); g != nil {
			<-*g
		}
		if st := f.jwksStatus.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		if cc := *f.cacheControl.Load(); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if age := f.age.Load(); age != nil && *age != "" {
			w.Header().Set("Age", *age)
		}
		w.Header().Set("Content-Type", "application/json")
		if o := f.jwksOverride.Load(); o != nil {
			_, _ = w.Write(*o)
			return
		}
		_, _ = w.Write(f.set.Load().JWKS())
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL
	f.iss = token.NewIssuer(f.url, aud, 15*time.Minute, f)
	return f
}

var defaultClaims = token.Claims{Subject: "user-1", ClientID: "web", Scope: "read write", SessionID: "sess-1", Roles: []string{"user"}}

// mint issues an access token at the fake clock's now.
func (f *fakeIssuer) mint(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := f.iss.Issue(c, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge signs header and claims as given with k (no checks at all).
func forge(t testing.TB, k *keys.Key, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sig, err := k.Method.Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// goodHeader and goodClaims are what tokend would sign, for forge.
func (f *fakeIssuer) goodHeader(k *keys.Key) map[string]any {
	return map[string]any{"alg": k.Alg, "kid": k.ID, "typ": "at+jwt"}
}

func (f *fakeIssuer) goodClaims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": f.url, "sub": "user-1", "aud": []string{"orders"}, "exp": now + 900, "iat": now, "nbf": now,
		"jti": "jti-1", "client_id": "web", "scope": "read", "roles": []string{"user"}, "sid": "sess-1",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func segment(tok string, i int) string { return strings.Split(tok, ".")[i] }
