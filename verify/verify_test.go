package verify_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/verify"
)

func newVerifier(t testing.TB, f *fakeIssuer, opts ...verify.Option) *verify.Verifier {
	t.Helper()
	v, err := verify.New(context.Background(), f.url, append([]verify.Option{verify.WithClock(f.clock.Now), verify.WithAudience("orders")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyAlgorithms(t *testing.T) {
	for _, alg := range []string{verify.ES256, verify.EdDSA, verify.RS256} {
		t.Run(alg, func(t *testing.T) {
			f := newFakeIssuer(t, alg, "orders", "billing")
			v := newVerifier(t, f)
			tok := f.mint(t, defaultClaims)
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now()
			if c.Issuer != f.url || c.Subject != "user-1" || c.ClientID != "web" || c.SessionID != "sess-1" ||
				!slices.Equal(c.Scopes, []string{"read", "write"}) || !slices.Equal(c.Roles, []string{"user"}) ||
				!slices.Equal(c.Audience, []string{"orders", "billing"}) || len(c.ID) != 22 ||
				!c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) || !c.ExpiresAt.Equal(now.Add(15*time.Minute)) {
				t.Fatalf("claims %+v", c)
			}
			if !c.HasScope("write") || c.HasScope("admin") || !c.HasRole("user") || c.HasRole("admin") {
				t.Fatal("HasScope/HasRole")
			}
			var extra struct {
				Sid string `json:"sid"`
			}
			if err := c.Decode(&extra); err != nil || extra.Sid != "sess-1" {
				t.Fatalf("Decode: %+v %v", extra, err)
			}
		})
	}
}

// A client_credentials token: no sid, no roles, no scope.
func TestVerifyMinimalToken(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	v := newVerifier(t, f)
	c, err := v.Verify(context.Background(), f.mint(t, tokenClaims{Subject: "svc", ClientID: "svc"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionID != "" || len(c.Roles) != 0 || c.Scopes != nil || !slices.Equal(c.Audience, []string{"orders"}) {
		t.Fatalf("%+v", c)
	}
}

func wantInvalid(t *testing.T, v *verify.Verifier, tok, descPart string) {
	t.Helper()
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, verify.ErrInvalid) || errors.Is(err, verify.ErrExpired) {
		t.Fatalf("Verify = %v, want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), descPart) {
		t.Fatalf("error %q does not mention %q", err, descPart)
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	v := newVerifier(t, f)
	k := f.set.Load().Signing()
	h, c := f.goodHeader(k), f.goodClaims()
	if _, err := v.Verify(context.Background(), forge(t, k, h, c)); err != nil {
		t.Fatalf("the good forged token fails: %v", err)
	}
	good := forge(t, k, h, c)
	other := testSet(t, verify.ES256, "other").Signing()
	rsa := testSet(t, verify.RS256, "a").Signing()
	now := f.clock.Now().Unix()

	// alg "none" and HMAC with the public key as secret (algorithm confusion).
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"`+k.ID+`","typ":"at+jwt"}`)) + "." + segment(good, 1) + "."
	hsHead := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"` + k.ID + `","typ":"at+jwt"}`))
	mac := hmac.New(sha256.New, f.set.Load().JWKS())
	mac.Write([]byte(hsHead + "." + segment(good, 1)))
	hsTok := hsHead + "." + segment(good, 1) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	cases := []struct {
		name, tok, desc string
	}{
		{"empty", "", "not a signed JWT"},
		{"two parts", segment(good, 0) + "." + segment(good, 1), "not a signed JWT"},
		{"four parts", good + ".x", "not a signed JWT"},
		{"alg none", noneTok, "not a signed JWT"},
		{"alg none with signature", strings.TrimSuffix(noneTok, ".") + ".AAAA", "algorithm is not accepted"},
		{"HS256", hsTok, "algorithm is not accepted"},
		{"unknown alg", forge(t, k, with(h, "alg", "ES512"), c), "algorithm is not accepted"},
		{"padded base64", segment(good, 0) + "=." + segment(good, 1) + "." + segment(good, 2), "not a signed JWT"},
		{"std base64", segment(good, 0) + "." + segment(good, 1) + ".+" + segment(good, 2)[1:], "signature is invalid"},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + segment(good, 1) + "." + segment(good, 2), "not a signed JWT"},
		{"no typ", forge(t, k, with(h, "typ", nil), c), "typ must be at+jwt"},
		{"typ JWT", forge(t, k, with(h, "typ", "JWT"), c), "typ must be at+jwt"},
		{"crit", forge(t, k, with(h, "crit", []string{"exp"}), c), "critical header"},
		{"no kid", forge(t, k, with(h, "kid", nil), c), "no key id"},
		{"unknown kid", forge(t, other, with(h, "kid", other.ID), c), "unknown key"},
		{"signed by another key", forge(t, other, h, c), "signature is invalid"},
		{"alg swapped to RS256", forge(t, rsa, with(h, "alg", "RS256"), c), "does not match its key"},
		{"tampered claims", segment(good, 0) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + segment(good, 2), "signature is invalid"},
		{"bad signature encoding", segment(good, 0) + "." + segment(good, 1) + ".!!!", "signature is invalid"},
		{"truncated signature", good[:len(good)-4], "signature is invalid"},
		{"claims not JSON", forgeRaw(t, k, h, "[1,2]"), "claims are malformed"},
		{"exp a string", forge(t, k, h, with(c, "exp", "tomorrow")), "claims are malformed"},
		{"aud a number", forge(t, k, h, with(c, "aud", 7)), "claims are malformed"},
		{"other issuer", forge(t, k, h, with(c, "iss", "https://evil.example")), "another issuer"},
		{"other audience", forge(t, k, h, with(c, "aud", []string{"billing"})), "not for this audience"},
		{"no audience", forge(t, k, h, with(c, "aud", nil)), "not for this audience"},
		{"no sub", forge(t, k, h, with(c, "sub", nil)), "no subject"},
		{"no client_id", forge(t, k, h, with(c, "client_id", nil)), "no client_id"},
		{"no jti", forge(t, k, h, with(c, "jti", nil)), "no id (jti)"},
		{"no iat", forge(t, k, h, with(c, "iat", nil)), "no issue time"},
		{"no exp", forge(t, k, h, with(c, "exp", nil)), "no expiry"},
		{"iat in the future", forge(t, k, h, with(c, "iat", now+31)), "issued in the future"},
		{"nbf in the future", forge(t, k, h, with(c, "nbf", now+31)), "not valid yet"},
		// Expired and otherwise wrong: invalid, not expired.
		{"expired from another issuer", forge(t, k, h, with(c, "exp", now-3600, "iss", "https://evil.example")), "another issuer"},
		{"too large", strings.Repeat("a", 17<<10), "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantInvalid(t, v, tc.tok, tc.desc) })
	}

	// Within the leeway: accepted.
	for _, cl := range []map[string]any{with(c, "iat", now+29), with(c, "nbf", now+29), with(c, "exp", now-29), with(c, "aud", "orders")} {
		if _, err := v.Verify(context.Background(), forge(t, k, h, cl)); err != nil {
			t.Errorf("%v: %v", cl, err)
		}
	}
	// typ compares as a media type.
	for _, typ := range []string{"AT+JWT", "application/at+jwt", "Application/At+Jwt"} {
		if _, err := v.Verify(context.Background(), forge(t, k, with(h, "typ", typ), c)); err != nil {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
}

func forgeRaw(t testing.TB, k *testKey, header map[string]any, claims string) string {
	t.Helper()
	h, _ := json.Marshal(header)
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	sig, err := k.Method.Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyExpired(t *testing.T) {
	f := newFakeIssuer(t, verify.EdDSA)
	v := newVerifier(t, f, verify.WithLeeway(5*time.Second))
	tok := f.mint(t, defaultClaims)
	f.clock.Advance(15*time.Minute + 4*time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	f.clock.Advance(time.Second)
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, verify.ErrExpired) || errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	f := newFakeIssuer(t, verify.RS256)
	v := newVerifier(t, f, verify.WithAlgorithms(verify.ES256, verify.EdDSA))
	wantInvalid(t, v, f.mint(t, defaultClaims), "algorithm is not accepted")
	for _, bad := range []string{"none", "HS256", "HS512", "PS256", ""} {
		if _, err := verify.New(context.Background(), f.url, verify.WithAlgorithms(bad)); err == nil {
			t.Errorf("WithAlgorithms(%q) accepted", bad)
		}
	}
}

// A published key without alg is still bound to its type: an EdDSA token
// cannot name an EC key.
func TestJWKWithoutAlg(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	var doc map[string][]map[string]any
	must(t, json.Unmarshal(f.set.Load().JWKS(), &doc))
	delete(doc["keys"][0], "alg")
	ed := testSet(t, verify.EdDSA, "a").Signing()
	ed2 := *ed
	ed2.ID = f.set.Load().Signing().ID // EdDSA signature under the EC key's kid
	b, _ := json.Marshal(doc)
	f.jwksOverride.Store(&b)
	v := newVerifier(t, f)
	if _, err := v.Verify(context.Background(), f.mint(t, defaultClaims)); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, v, forge(t, &ed2, f.goodHeader(&ed2), f.goodClaims()), "does not match its key")
}

func TestJWKSParsing(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	k := f.set.Load().Signing()
	var doc map[string][]map[string]any
	must(t, json.Unmarshal(f.set.Load().JWKS(), &doc))
	good := doc["keys"][0]
	bad := []map[string]any{
		with(good, "kid", nil),
		with(good, "use", "enc"),
		with(good, "alg", "HS256"),
		with(good, "crv", "P-384"),
		with(good, "x", "AAAA"),
		with(good, "y", good["x"]), // not on the curve
		with(good, "kty", "oct"),
		with(good, "alg", "EdDSA"),
		{"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
		{"kty": "OKP", "kid": "ed", "crv": "X25519", "x": good["x"]},
	}
	for i, j := range bad {
		j = with(j, "kid", "bad") // keep the good key's kid free
		if i == 0 {
			delete(j, "kid")
		}
		b, _ := json.Marshal(map[string]any{"keys": []any{j}})
		f.jwksOverride.Store(&b)
		v := newVerifier(t, f)
		_, err := v.Verify(context.Background(), f.mint(t, defaultClaims))
		if !errors.Is(err, verify.ErrUnavailable) {
			t.Errorf("JWKS %v: %v, want ErrUnavailable (no usable key)", j, err)
		}
	}
	// Bad keys next to a good one are skipped; a duplicate kid keeps the first.
	b, _ := json.Marshal(map[string]any{"keys": []any{with(good, "use", "enc", "kid", "x"), good, with(good, "x", "AAAA")}})
	f.jwksOverride.Store(&b)
	if _, err := newVerifier(t, f).Verify(context.Background(), f.mint(t, defaultClaims)); err != nil {
		t.Fatalf("good key among bad ones: %v (kid %s)", err, k.ID)
	}
	for _, body := range []string{"", "[]", `{"keys":{}}`, "<html>"} {
		b := []byte(body)
		f.jwksOverride.Store(&b)
		if _, err := newVerifier(t, f).Verify(context.Background(), f.mint(t, defaultClaims)); !errors.Is(err, verify.ErrUnavailable) {
			t.Errorf("JWKS %q: %v", body, err)
		}
	}
}

func TestDiscovery(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.ES256)
	aud := verify.WithAudience("orders")
	if _, err := verify.New(ctx, f.url+"/", aud); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("issuer mismatch: %v", err)
	}
	if _, err := verify.New(ctx, "", aud); err == nil {
		t.Fatal("empty issuer accepted")
	}
	if _, err := verify.New(ctx, "ftp://auth.example.com", aud); err == nil {
		t.Fatal("an issuer whose metadata cannot be fetched accepted")
	}
	f.mdStatus.Store(http.StatusNotFound) // a wrong issuer URL, say
	if _, err := verify.New(ctx, f.url, aud); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("metadata 404: %v", err)
	}
	f.mdStatus.Store(0)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"` + "http://" + r.Host + `"}`))
	}))
	defer bad.Close()
	if _, err := verify.New(ctx, bad.URL, aud); err == nil || !strings.Contains(err.Error(), "no jwks_uri") {
		t.Fatalf("no jwks_uri: %v", err)
	}
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }))
	defer notJSON.Close()
	if _, err := verify.New(ctx, notJSON.URL, aud); err == nil {
		t.Fatal("non-JSON metadata accepted")
	}
	if _, err := verify.New(ctx, f.url, aud, verify.WithJWKSURL("ftp://x")); err == nil {
		t.Fatal("ftp jwks_uri accepted")
	}
	// WithJWKSURL skips discovery: the issuer need not serve metadata.
	v, err := verify.New(ctx, "https://auth.example.com", aud, verify.WithJWKSURL(f.url+"/.well-known/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	k := f.set.Load().Signing()
	if _, err := v.Verify(ctx, forge(t, k, f.goodHeader(k), with(f.goodClaims(), "iss", "https://auth.example.com"))); err != nil {
		t.Fatal(err)
	}
}

// A service may start before tokend: New then returns a Verifier that
// reads the metadata on first use, and answers ErrUnavailable until it can.
func TestNewBeforeTokend(t *testing.T) {
	ctx := context.Background()
	// Nothing listens there: a network error.
	v, err := verify.New(ctx, "http://127.0.0.1:1", verify.WithAudience("orders"))
	if err != nil {
		t.Fatalf("unreachable issuer: %v", err)
	}
	if _, err := v.Verify(ctx, "a.b.c"); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("a malformed token needs no keys: %v", err)
	}

	// tokend answers 503 (starting), then comes up.
	f := newFakeIssuer(t, verify.ES256)
	f.mdStatus.Store(http.StatusServiceUnavailable)
	v = newVerifier(t, f)
	tok := f.mint(t, defaultClaims)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("tokend down: %v", err)
	}
	if f.fetches.Load() != 0 {
		t.Fatal("fetched a JWKS without metadata")
	}
	f.mdStatus.Store(0)
	f.clock.Advance(verify.MinCacheTTL) // failures are retried at most once a second
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("tokend up: %v", err)
	}
}

// The JWKS is fetched once and kept for its max-age.
func TestCacheHonoursMaxAge(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	cc := "public, max-age=60"
	f.cacheControl.Store(&cc)
	v := newVerifier(t, f)
	for n := 0; n < 20; n++ {
		if _, err := v.Verify(context.Background(), f.mint(t, defaultClaims)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within max-age, want 1", n)
	}
	f.clock.Advance(59 * time.Second)
	must(t, verifyOnce(v, f))
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches before max-age, want 1", n)
	}
	f.clock.Advance(time.Second)
	must(t, verifyOnce(v, f))
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after max-age, want 2", n)
	}
}

func verifyOnce(v *verify.Verifier, f *fakeIssuer) error {
	tok, err := f.issue(defaultClaims, f.clock.Now())
	if err != nil {
		return err
	}
	_, err = v.Verify(context.Background(), tok)
	return err
}

func TestCacheTTL(t *testing.T) {
	for _, tc := range []struct {
		cc, age string
		ttl     time.Duration // the fetch after ttl refetches; the one before does not
	}{
		{"max-age=120", "", 120 * time.Second},
		{"public, max-age=120, must-revalidate", "", 120 * time.Second},
		{"max-age=120", "20", 100 * time.Second},
		{"", "", verify.DefaultCacheTTL},
		{"no-store", "", verify.MinCacheTTL},
		{"no-cache, max-age=60", "", verify.MinCacheTTL},
		{"max-age=0", "", verify.MinCacheTTL},
		{"max-age=bogus", "", verify.MinCacheTTL},
		{"max-age=999999999", "", verify.MaxCacheTTL},
	} {
		t.Run(tc.cc+"/"+tc.age, func(t *testing.T) {
			f := newFakeIssuer(t, verify.ES256)
			cc := tc.cc
			f.cacheControl.Store(&cc)
			age := tc.age
			f.age.Store(&age)
			v := newVerifier(t, f)
			must(t, verifyOnce(v, f))
			f.clock.Advance(tc.ttl - time.Millisecond)
			must(t, verifyOnce(v, f))
			if n := f.fetches.Load(); n != 1 {
				t.Fatalf("%d fetches before %v", n, tc.ttl)
			}
			f.clock.Advance(time.Millisecond)
			must(t, verifyOnce(v, f))
			if n := f.fetches.Load(); n != 2 {
				t.Fatalf("%d fetches at %v", n, tc.ttl)
			}
		})
	}
}

// A token signed by a key published after the last fetch makes the
// verifier fetch again, once for all concurrent callers, and at most once
// per refetch interval.
func TestUnknownKidRefetch(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	v := newVerifier(t, f, verify.WithRefetchInterval(time.Minute))
	must(t, verifyOnce(v, f)) // warm cache
	if f.fetches.Load() != 1 {
		t.Fatal("no initial fetch")
	}

	// Rotate: the new key signs (as if it had not been pre-published).
	oldSet, newKey := f.set.Load(), testSet(t, verify.ES256, "new").Signing()
	set, err := newKeySet(newKey, oldSet.Keys()...)
	must(t, err)
	f.set.Store(set)
	tok := f.mint(t, defaultClaims)

	gate := make(chan struct{})
	f.gate.Store(&gate)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for n := 0; n < 50; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all pile up on the one fetch
	f.gate.Store(nil)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("verification during refetch: %v", err)
		}
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one refetch shared by 50 callers)", n)
	}

	// Forged kids cause no more fetches within the interval...
	other := testSet(t, verify.ES256, "other").Signing()
	forged := forge(t, other, f.goodHeader(other), f.goodClaims())
	for n := 0; n < 10; n++ {
		wantInvalid(t, v, forged, "unknown key")
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after 10 forged kids, want 2", n)
	}
	// ...and one per interval after it.
	f.clock.Advance(time.Minute)
	forged = forge(t, other, f.goodHeader(other), f.goodClaims())
	for n := 0; n < 10; n++ {
		wantInvalid(t, v, forged, "unknown key")
	}
	if n := f.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
}

// When the JWKS cannot be fetched, the cached keys keep working; with no
// keys at all, verification is unavailable (not invalid).
func TestFetchFailure(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	cc := "max-age=60"
	f.cacheControl.Store(&cc)
	f.jwksStatus.Store(500)
	v := newVerifier(t, f)
	_, err := v.Verify(context.Background(), f.mint(t, defaultClaims))
	if !errors.Is(err, verify.ErrUnavailable) || errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("no keys: %v", err)
	}
	// Failing fast for a second rather than hammering the issuer.
	_, _ = v.Verify(context.Background(), f.mint(t, defaultClaims))
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	f.clock.Advance(time.Second)
	f.jwksStatus.Store(0)
	must(t, verifyOnce(v, f))

	// The issuer goes down; the cache expires; the stale keys still work,
	// and the issuer is asked again only after the refetch interval.
	f.jwksStatus.Store(503)
	f.clock.Advance(61 * time.Second)
	before := f.fetches.Load()
	for n := 0; n < 5; n++ {
		must(t, verifyOnce(v, f))
	}
	if n := f.fetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches while the issuer is down, want 1", n)
	}
	f.clock.Advance(verify.DefaultRefetchInterval)
	must(t, verifyOnce(v, f))
	if n := f.fetches.Load() - before; n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// A caller whose context ends stops waiting for a slow fetch.
func TestFetchContext(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	gate := make(chan struct{})
	f.gate.Store(&gate)
	defer close(gate)
	v := newVerifier(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, f.mint(t, defaultClaims))
	if !errors.Is(err, verify.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
}

func TestOptions(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	if _, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithLeeway(-time.Second)); err == nil {
		t.Fatal("negative leeway accepted")
	}
	hc := &http.Client{Timeout: time.Second}
	v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithHTTPClient(hc), verify.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), f.mint(t, defaultClaims)); err != nil {
		t.Fatal(err)
	}
}

// The audience is checked unless the Verifier is told, by name, not to:
// New without WithAudience fails, and a token for another service is
// refused: a token for one service must not open another.
func TestAudienceRequired(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.ES256, "billing")
	if _, err := verify.New(ctx, f.url); err == nil || !strings.Contains(err.Error(), "InsecureSkipAudienceCheck") {
		t.Fatalf("New without an audience: %v", err)
	}
	if _, err := verify.New(ctx, f.url, verify.WithAudience()); err == nil {
		t.Fatal("WithAudience() with no audience accepted")
	}
	if _, err := verify.New(ctx, f.url, verify.WithAudience("")); err == nil {
		t.Fatal(`WithAudience("") accepted`)
	}
	if _, err := verify.New(ctx, f.url, verify.WithAudience("orders"), verify.InsecureSkipAudienceCheck()); err == nil {
		t.Fatal("WithAudience and InsecureSkipAudienceCheck together accepted")
	}
	if _, err := verify.NewWithKeys(f.url, staticKeys{f.set.Load()}); err == nil {
		t.Fatal("NewWithKeys without an audience accepted")
	}
	billing := f.mint(t, defaultClaims)

	orders, err := verify.New(ctx, f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
	must(t, err)
	wantInvalid(t, orders, billing, "not for this audience")

	anyAud, err := verify.New(ctx, f.url, verify.InsecureSkipAudienceCheck(), verify.WithClock(f.clock.Now))
	must(t, err)
	c, err := anyAud.Verify(ctx, billing)
	must(t, err)
	if !slices.Equal(c.Audience, []string{"billing"}) {
		t.Fatalf("aud %v", c.Audience)
	}
	k := f.set.Load().Signing()
	if _, err := anyAud.Verify(ctx, forge(t, k, f.goodHeader(k), with(f.goodClaims(), "aud", nil))); err != nil {
		t.Fatalf("no aud with InsecureSkipAudienceCheck: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// aud and headers in forms tokend does not write (escapes, whitespace,
// extra members) are still read correctly.
func TestVerifyOtherEncodings(t *testing.T) {
	f := newFakeIssuer(t, verify.EdDSA)
	v := newVerifier(t, f)
	k := f.set.Load().Signing()
	c := f.goodClaims()
	claims, _ := json.Marshal(with(c, "aud", nil))
	base := strings.TrimSuffix(string(claims), "}")
	for _, aud := range []string{`"orders"`, `"or\u0064ers"`, `[ "orders" ]`, `["x","orders"]`, `["or\u0064ers"]`, `["x",  "orders"]`} {
		if _, err := v.Verify(context.Background(), forgeRaw(t, k, f.goodHeader(k), base+`,"aud":`+aud+`}`)); err != nil {
			t.Errorf("aud %s: %v", aud, err)
		}
	}
	for _, aud := range []string{`[]`, `["x"]`, `"x"`, `null`} {
		wantInvalid(t, v, forgeRaw(t, k, f.goodHeader(k), base+`,"aud":`+aud+`}`), "not for this audience")
	}
	for _, aud := range []string{`["orders",1]`, `{"a":"orders"}`, `["orders"`, `"orders`} {
		wantInvalid(t, v, forgeRaw(t, k, f.goodHeader(k), base+`,"aud":`+aud+`}`), "malformed")
	}

	// More distinct headers than the header cache holds all verify, and a
	// cached header does not vouch for a bad signature.
	for i := 0; i < 80; i++ {
		h := with(f.goodHeader(k), "x-n", i)
		good := forge(t, k, h, c)
		if _, err := v.Verify(context.Background(), good); err != nil {
			t.Fatalf("header %d: %v", i, err)
		}
		other := forge(t, k, h, with(c, "sub", "admin"))
		wantInvalid(t, v, segment(good, 0)+"."+segment(other, 1)+"."+segment(good, 2), "signature is invalid")
	}
}

// NewWithKeys checks tokens against the keys a KeySet gives, asked for
// every token (as tokend checks its own), with the same rules as New.
func TestNewWithKeys(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.ES256)
	es, ed, rs := f.set.Load().Signing(), testSet(t, verify.EdDSA, "a").Signing(), testSet(t, verify.RS256, "a").Signing()
	set, err := newKeySet(es, ed, rs)
	must(t, err)
	var ks atomic.Pointer[testKeySet]
	ks.Store(set)
	v, err := verify.NewWithKeys(f.url, keySetFunc(func(kid string) (verify.Key, bool) { return staticKeys{ks.Load()}.LookupKey(kid) }),
		verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
	must(t, err)
	for _, k := range []*testKey{es, ed, rs} {
		c, err := v.Verify(ctx, forge(t, k, f.goodHeader(k), f.goodClaims()))
		if err != nil || c.KeyID != k.ID {
			t.Fatalf("%s: %+v %v", k.Alg, c, err)
		}
	}
	// The rules are New's: the key's own alg only, iss, aud, times.
	wantInvalid(t, v, forge(t, rs, with(f.goodHeader(es), "alg", verify.RS256), f.goodClaims()), "does not match its key")
	wantInvalid(t, v, forge(t, es, f.goodHeader(es), with(f.goodClaims(), "aud", "billing")), "not for this audience")
	wantInvalid(t, v, forge(t, es, f.goodHeader(es), with(f.goodClaims(), "iss", "https://evil.test")), "another issuer")
	// A key dropped from the set stops verifying at once.
	ks.Store(testSet(t, verify.EdDSA, "a"))
	wantInvalid(t, v, forge(t, es, f.goodHeader(es), f.goodClaims()), "unknown key")
	// VerifyAt uses the instant given, not the clock.
	tok := forge(t, ed, f.goodHeader(ed), f.goodClaims())
	if _, err := v.VerifyAt(ctx, tok, f.clock.Now().Add(time.Hour)); !errors.Is(err, verify.ErrExpired) {
		t.Fatalf("VerifyAt an hour later: %v", err)
	}
	if f.fetches.Load() != 0 {
		t.Fatalf("NewWithKeys fetched the JWKS %d times", f.fetches.Load())
	}

	// A KeySet key of the wrong type or size for its alg, or with no alg,
	// verifies nothing.
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	must(t, err)
	smallKey := &testKey{ID: "small", Alg: verify.RS256, Public: small.Public(), Signer: small, Method: rs.Method}
	for name, key := range map[string]verify.Key{
		"EC key as EdDSA": {Algorithm: verify.EdDSA, Public: es.Public},
		"no alg":          {Public: es.Public},
		"1024-bit RSA":    {Algorithm: verify.RS256, Public: small.Public()},
		"nil key":         {Algorithm: verify.ES256},
	} {
		v, err := verify.NewWithKeys(f.url, keySetFunc(func(string) (verify.Key, bool) { return key, true }), verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
		must(t, err)
		signer := es
		if key.Public == small.Public() {
			signer = smallKey
		}
		if _, err := v.Verify(ctx, forge(t, signer, with(f.goodHeader(signer), "alg", key.Algorithm), f.goodClaims())); !errors.Is(err, verify.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := verify.NewWithKeys(f.url, nil, verify.WithAudience("orders")); err == nil {
		t.Error("nil KeySet accepted")
	}
}

type keySetFunc func(kid string) (verify.Key, bool)

func (f keySetFunc) LookupKey(kid string) (verify.Key, bool) { return f(kid) }
