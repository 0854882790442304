package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
	"github.com/tokend/tokend/verify/internal/testkit"
)

// The tests of this module build what they need of tokend here — keys, a
// JWKS, tokens laid out as tokend's token.Issuer writes them — so that the
// module depends on nothing of the server. That tokend's real tokens
// verify is tested on the server's side (token/ and server/ tests, and
// examples/orders).

// testKey is a signing key and what a JWKS publishes of it.
type testKey struct {
	ID     string
	Alg    string
	Public crypto.PublicKey
	Signer crypto.Signer
	Method jwt.SigningMethod
}

// jwk is the key's JWK (RFC 7517), with use and alg as tokend writes them.
func (k *testKey) jwk() map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]string{"use": "sig", "alg": k.Alg, "kid": k.ID}
	switch p := k.Public.(type) {
	case *ecdsa.PublicKey:
		m["kty"], m["crv"] = "EC", "P-256"
		m["x"], m["y"] = enc(p.X.FillBytes(make([]byte, 32))), enc(p.Y.FillBytes(make([]byte, 32)))
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", enc(p)
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", enc(p.N.Bytes()), enc(big.NewInt(int64(p.E)).Bytes())
	}
	return m
}

func generateKey(t testing.TB, alg string) *testKey {
	t.Helper()
	nk := testkit.NewKey(t, alg)
	k := &testKey{Alg: alg, Public: nk.Signer.Public(), Signer: nk.Signer, Method: nk.Method}
	sum := sha256.Sum256([]byte(alg + k.jwk()["x"] + k.jwk()["n"]))
	k.ID = base64.RawURLEncoding.EncodeToString(sum[:])
	return k
}

// testKeySet is a signing key and the keys published with it.
type testKeySet struct {
	signing *testKey
	keys    []*testKey
}

func newKeySet(signing *testKey, published ...*testKey) (*testKeySet, error) {
	s := &testKeySet{signing: signing, keys: []*testKey{signing}}
	for _, k := range published {
		if k.ID != signing.ID {
			s.keys = append(s.keys, k)
		}
	}
	return s, nil
}

func (s *testKeySet) Signing() *testKey { return s.signing }
func (s *testKeySet) Keys() []*testKey  { return append([]*testKey(nil), s.keys...) }
func (s *testKeySet) JWKS() []byte      { return jwksOf(s.keys...) }
func (s *testKeySet) lookup(kid string) *testKey {
	for _, k := range s.keys {
		if k.ID == kid {
			return k
		}
	}
	return nil
}

func jwksOf(ks ...*testKey) []byte {
	doc := struct {
		Keys []map[string]string `json:"keys"`
	}{}
	for _, k := range ks {
		doc.Keys = append(doc.Keys, k.jwk())
	}
	b, _ := json.Marshal(doc)
	return b
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*testKeySet{}
)

// testSet returns one cached single-key set per alg and name.
func testSet(t testing.TB, alg, name string) *testKeySet {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if s, ok := keyCache[alg+name]; ok {
		return s
	}
	s, _ := newKeySet(generateKey(t, alg))
	keyCache[alg+name] = s
	return s
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeIssuer serves what a verifier reads from tokend — the RFC 8414
// metadata and the JWKS — and signs tokens as tokend does.
type fakeIssuer struct {
	srv   *httptest.Server
	url   string
	clock *testClock
	aud   []string

	set          atomic.Pointer[testKeySet]
	cacheControl atomic.Pointer[string] // of the JWKS; "" = none
	age          atomic.Pointer[string] // Age header of the JWKS; nil or "" = none
	jwksOverride atomic.Pointer[[]byte] // served instead of the set's JWKS
	jwksStatus   atomic.Int32           // 0 = 200
	mdStatus     atomic.Int32           // of the metadata; 0 = 200
	fetches      atomic.Int64           // JWKS requests
	gate         atomic.Pointer[chan struct{}]
}

// newFakeIssuer serves a fake tokend whose tokens are for aud ("orders"
// if none is given).
func newFakeIssuer(t testing.TB, alg string, aud ...string) *fakeIssuer {
	t.Helper()
	if len(aud) == 0 {
		aud = []string{"orders"}
	}
	f := &fakeIssuer{clock: &testClock{now: time.Now().Truncate(time.Second)}, aud: aud}
	f.set.Store(testSet(t, alg, "a"))
	cc := "public, max-age=300"
	f.cacheControl.Store(&cc)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		if st := f.mdStatus.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": f.url, "jwks_uri": f.url + "/.well-known/jwks.json"})
	})
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
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
	return f
}

// tokenClaims are the per-token inputs of tokend's token.Issuer.Issue.
type tokenClaims struct {
	Subject, ClientID, Scope, SessionID string
	Roles                               []string
	JKT                                 string   // cnf.jkt: the token is DPoP-bound
	Actors                              []string // act: the current actor first
}

var defaultClaims = tokenClaims{Subject: "user-1", ClientID: "web", Scope: "read write", SessionID: "sess-1", Roles: []string{"user"}}

// issue signs an access token for c issued at now, laid out byte for byte
// as tokend's token.Issuer writes one (docs/design.md, "Access tokens"),
// valid for 15 minutes, with the set's signing key.
func (f *fakeIssuer) issue(c tokenClaims, now time.Time) (string, error) {
	k := f.set.Load().Signing()
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	strs := func(ss []string) string {
		if ss == nil {
			ss = []string{}
		}
		b, _ := json.Marshal(ss)
		return string(b)
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	iat := strconv.FormatInt(now.Unix(), 10)
	p := `{"iss":` + str(f.url) + `,"sub":` + str(c.Subject) + `,"aud":` + strs(f.aud) +
		`,"exp":` + strconv.FormatInt(now.Add(15*time.Minute).Unix(), 10) + `,"iat":` + iat + `,"nbf":` + iat +
		`,"jti":"` + base64.RawURLEncoding.EncodeToString(jti[:]) + `","client_id":` + str(c.ClientID)
	if c.Scope != "" {
		p += `,"scope":` + str(c.Scope)
	}
	p += `,"roles":` + strs(c.Roles)
	if c.SessionID != "" {
		p += `,"sid":` + str(c.SessionID)
	}
	if c.JKT != "" {
		p += `,"cnf":{"jkt":` + str(c.JKT) + `}`
	}
	if len(c.Actors) > 0 {
		act := ""
		for i := len(c.Actors) - 1; i >= 0; i-- {
			if act != "" {
				act = `,"act":` + act
			}
			act = `{"sub":` + str(c.Actors[i]) + act + `}`
		}
		p += `,"act":` + act
	}
	p += "}"
	h := `{"alg":` + str(k.Alg) + `,"kid":` + str(k.ID) + `,"typ":"at+jwt"}`
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(h)) + "." + enc([]byte(p))
	sig, err := k.Method.Sign(signing, k.Signer)
	if err != nil {
		return "", err
	}
	return signing + "." + enc(sig), nil
}

// mint issues an access token at the fake clock's now.
func (f *fakeIssuer) mint(t testing.TB, c tokenClaims) string {
	t.Helper()
	tok, err := f.issue(c, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge signs header and claims as given with k (no checks at all).
func forge(t testing.TB, k *testKey, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return sign(t, k, h, c)
}

// sign signs the header and payload bytes as given with k.
func sign(t testing.TB, k *testKey, header, payload []byte) string {
	t.Helper()
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := k.Method.Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// goodHeader and goodClaims are what tokend would sign, for forge.
func (f *fakeIssuer) goodHeader(k *testKey) map[string]any {
	return map[string]any{"alg": k.Alg, "kid": k.ID, "typ": "at+jwt"}
}

func (f *fakeIssuer) goodClaims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": f.url, "sub": "user-1", "aud": []string{"orders"}, "exp": now + 900, "iat": now, "nbf": now,
		"jti": "jti-1", "client_id": "web", "scope": "read", "roles": []string{"user"}, "sid": "sess-1",
	}
}

// with edits a copy of a token's header or claims.
var with = testkit.Edit

func segment(tok string, i int) string { return strings.Split(tok, ".")[i] }

// staticKeys is a verify.KeySet over a test key set, as tokend's own
// verification uses one over its keys.
type staticKeys struct{ set *testKeySet }

func (s staticKeys) LookupKey(kid string) (verify.Key, bool) {
	k := s.set.lookup(kid)
	if k == nil {
		return verify.Key{}, false
	}
	return verify.Key{Algorithm: k.Alg, Public: k.Public}, true
}
