package token

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/verify"
)

const (
	testIss = "https://auth.example.com"
	testAud = "https://api.example.com"
)

var (
	t0        = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testSets  = map[string]*keys.Set{}
	setsMu    sync.Mutex
	allAlgs   = []string{verify.ES256, verify.EdDSA, verify.RS256}
	fullInput = Claims{Subject: "user1", ClientID: "web", Scope: "openid profile", SessionID: "sess1", Roles: []string{"admin", "user"}}
)

func testSet(t testing.TB, alg string) *keys.Set {
	t.Helper()
	setsMu.Lock()
	defer setsMu.Unlock()
	if s, ok := testSets[alg]; ok {
		return s
	}
	s, err := keys.Ephemeral(alg)
	if err != nil {
		t.Fatal(err)
	}
	testSets[alg] = s
	return s
}

func newTestIssuer(t testing.TB, alg string) *Issuer {
	return NewIssuer(testIss, []string{testAud, "https://other.example.com"}, 15*time.Minute, StaticKeys{testSet(t, alg)})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestIssueVerifyRoundTrip(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			iss := newTestIssuer(t, alg)
			k := testSet(t, alg).Current()
			tok, err := iss.Issue(fullInput, t0)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q", tok)
			}
			hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
			if want := `{"alg":"` + alg + `","kid":"` + k.ID + `","typ":"at+jwt"}`; string(hdr) != want {
				t.Errorf("header %s, want %s", hdr, want)
			}
			_, p := testkit.Decode(t, tok)
			want := map[string]any{
				"iss": testIss, "sub": "user1", "client_id": "web", "scope": "openid profile", "sid": "sess1",
				"aud":   []any{testAud, "https://other.example.com"},
				"roles": []any{"admin", "user"},
				"iat":   float64(t0.Unix()), "nbf": float64(t0.Unix()), "exp": float64(t0.Add(15 * time.Minute).Unix()),
			}
			jti, _ := p["jti"].(string)
			if raw, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(raw) != 16 {
				t.Errorf("jti %q is not 128 bits of base64url", jti)
			}
			delete(p, "jti")
			if !equalJSON(p, want) {
				t.Errorf("payload %v,\nwant %v", p, want)
			}

			c, err := iss.Verify(tok, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			wantC := verify.Claims{
				Issuer: testIss, Subject: "user1", ClientID: "web", Scopes: []string{"openid", "profile"}, SessionID: "sess1", ID: jti,
				Audience: []string{testAud, "https://other.example.com"}, Roles: []string{"admin", "user"},
				IssuedAt: t0, NotBefore: t0, ExpiresAt: t0.Add(15 * time.Minute),
			}
			if !equalClaims(c, wantC) {
				t.Errorf("Verify = %+v,\nwant %+v", c, wantC)
			}

			// An independent check: plain golang-jwt accepts the token.
			parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return k.Public, nil },
				jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return t0 }),
				jwt.WithIssuer(testIss), jwt.WithAudience(testAud), jwt.WithExpirationRequired())
			if err != nil || !parsed.Valid {
				t.Fatalf("golang-jwt rejects the token: %v", err)
			}
		})
	}
}

func equalJSON(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func equalClaims(a *verify.Claims, b verify.Claims) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.ClientID == b.ClientID && slices.Equal(a.Scopes, b.Scopes) &&
		a.SessionID == b.SessionID && a.ID == b.ID && slices.Equal(a.Audience, b.Audience) &&
		slices.Equal(a.Roles, b.Roles) && a.IssuedAt.Equal(b.IssuedAt) && a.NotBefore.Equal(b.NotBefore) &&
		a.ExpiresAt.Equal(b.ExpiresAt)
}

// client_credentials: no sid, no scope, no roles; roles still present as [].
func TestIssueMinimalClaims(t *testing.T) {
	iss := newTestIssuer(t, verify.ES256)
	tok, err := iss.Issue(Claims{Subject: "svc", ClientID: "svc"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, p := testkit.Decode(t, tok)
	if _, ok := p["sid"]; ok {
		t.Error("sid present")
	}
	if _, ok := p["scope"]; ok {
		t.Error("empty scope present")
	}
	if r, ok := p["roles"].([]any); !ok || len(r) != 0 {
		t.Errorf("roles = %#v, want []", p["roles"])
	}
	c, err := iss.Verify(tok, t0)
	if err != nil || c.SessionID != "" || len(c.Scopes) != 0 || len(c.Roles) != 0 {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}

// Values that need JSON escaping are escaped.
func TestIssueEscaping(t *testing.T) {
	iss := NewIssuer(`iss"\`, nil, time.Minute, StaticKeys{testSet(t, verify.EdDSA)})
	in := Claims{Subject: "a\"b\\c\nd", ClientID: "ünïcode ✓", Scope: "<x>&", Roles: []string{"r\x00", "\xff"}}
	tok, err := iss.Issue(in, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, p := testkit.Decode(t, tok)
	if _, ok := p["aud"]; ok {
		t.Error("aud present with no audience configured")
	}
	c, err := iss.Verify(tok, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != `iss"\` || c.Subject != in.Subject || c.ClientID != in.ClientID || !slices.Equal(c.Scopes, []string{"<x>&"}) ||
		!slices.Equal(c.Roles, []string{"r\x00", "\ufffd"}) {
		t.Errorf("claims %+v", c)
	}
}

func TestIssueErrors(t *testing.T) {
	iss := newTestIssuer(t, verify.ES256)
	for _, c := range []Claims{{ClientID: "web"}, {Subject: "u"}} {
		if _, err := iss.Issue(c, t0); err == nil {
			t.Errorf("Issue(%+v) succeeded", c)
		}
	}
	empty := NewIssuer(testIss, nil, time.Minute, StaticKeys{})
	if _, err := empty.Issue(fullInput, t0); err == nil {
		t.Error("Issue with no key set succeeded")
	}
	if _, err := empty.Verify("a.b.c", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Verify with no key set: %v", err)
	}
	for name, f := range map[string]func(){
		"ttl 0":   func() { NewIssuer(testIss, nil, 0, StaticKeys{}) },
		"nil src": func() { NewIssuer(testIss, nil, time.Minute, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewIssuer did not panic", name)
				}
			}()
			f()
		}()
	}
	if iss.TTL() != 15*time.Minute {
		t.Errorf("TTL() = %v", iss.TTL())
	}
}

func TestJTIUnique(t *testing.T) {
	iss := newTestIssuer(t, verify.EdDSA)
	seen := map[string]bool{}
	for range 1000 {
		tok, _ := iss.Issue(fullInput, t0)
		c, err := iss.Verify(tok, t0)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("duplicate jti %s", c.ID)
		}
		seen[c.ID] = true
	}
}

func validPayload() map[string]any {
	return map[string]any{
		"iss": testIss, "sub": "user1", "aud": []string{testAud}, "client_id": "web",
		"jti": "abc", "iat": t0.Unix(), "nbf": t0.Unix(), "exp": t0.Add(15 * time.Minute).Unix(),
	}
}

func TestVerifyRejects(t *testing.T) {
	es := testSet(t, verify.ES256).Current()
	rs := testSet(t, verify.RS256).Current()
	ed := testSet(t, verify.EdDSA).Current()
	// The issuer publishes all three keys; ES256 signs.
	set, err := keys.NewSet(es, rs, ed)
	if err != nil {
		t.Fatal(err)
	}
	iss := NewIssuer(testIss, []string{testAud}, 15*time.Minute, StaticKeys{set})
	other, _ := keys.Generate(verify.ES256) // not in the set

	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	pubPEM := func(k *keys.Key) []byte {
		der, _ := x509.MarshalPKIXPublicKey(k.Public)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	ecPoint, _ := es.Public.(*ecdsa.PublicKey).Bytes()
	none := func(string) []byte { return nil }
	esSig, rsSig := testkit.Signer(t, es.Method, es.Signer), testkit.Signer(t, rs.Method, rs.Signer)
	otherSig := testkit.Signer(t, other.Method, other.Signer)

	good := testkit.Encode(t, hdr(verify.ES256, es.ID), validPayload(), esSig)
	if _, err := iss.Verify(good, t0); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}

	cases := map[string]string{
		"alg none":               testkit.Encode(t, hdr("none", es.ID), validPayload(), none),
		"alg none no kid":        testkit.Encode(t, map[string]any{"alg": "none", "typ": "at+jwt"}, validPayload(), none),
		"HS256 with RSA PEM":     testkit.Encode(t, hdr("HS256", rs.ID), validPayload(), testkit.HS256(pubPEM(rs))),
		"HS256 with EC PEM":      testkit.Encode(t, hdr("HS256", es.ID), validPayload(), testkit.HS256(pubPEM(es))),
		"HS256 with EC point":    testkit.Encode(t, hdr("HS256", es.ID), validPayload(), testkit.HS256(ecPoint)),
		"HS256 with kid":         testkit.Encode(t, hdr("HS256", es.ID), validPayload(), testkit.HS256([]byte(es.ID))),
		"alg swap ES256→RS256":   testkit.Encode(t, hdr(verify.RS256, es.ID), validPayload(), rsSig),
		"alg swap EdDSA kid":     testkit.Encode(t, hdr(verify.ES256, ed.ID), validPayload(), esSig),
		"PS256":                  testkit.Encode(t, hdr("PS256", rs.ID), validPayload(), rsSig),
		"unknown kid":            testkit.Encode(t, hdr(verify.ES256, other.ID), validPayload(), otherSig),
		"unknown kid, known key": testkit.Encode(t, hdr(verify.ES256, "nope"), validPayload(), esSig),
		"no kid":                 testkit.Encode(t, map[string]any{"alg": verify.ES256, "typ": "at+jwt"}, validPayload(), esSig),
		"kid not string":         testkit.Encode(t, map[string]any{"alg": verify.ES256, "kid": 1, "typ": "at+jwt"}, validPayload(), esSig),
		"signed by other key":    testkit.Encode(t, hdr(verify.ES256, es.ID), validPayload(), otherSig),
		"typ JWT":                testkit.Encode(t, testkit.Edit(hdr(verify.ES256, es.ID), "typ", "JWT"), validPayload(), esSig),
		"typ missing":            testkit.Encode(t, testkit.Edit(hdr(verify.ES256, es.ID), "typ", nil), validPayload(), esSig),
		"typ not string":         testkit.Encode(t, testkit.Edit(hdr(verify.ES256, es.ID), "typ", 1), validPayload(), esSig),
		"crit":                   testkit.Encode(t, testkit.Edit(hdr(verify.ES256, es.ID), "crit", []string{"exp"}), validPayload(), esSig),
		"wrong iss":              testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "iss", "https://evil"), esSig),
		"no iss":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "iss", nil), esSig),
		"wrong aud":              testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "aud", []string{"https://x"}), esSig),
		"no aud":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "aud", nil), esSig),
		"no sub":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "sub", nil), esSig),
		"no client_id":           testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "client_id", nil), esSig),
		"no jti":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "jti", nil), esSig),
		"no iat":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "iat", nil), esSig),
		"no exp":                 testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "exp", nil), esSig),
		"exp not a number":       testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "exp", "soon"), esSig),
		"roles not array":        testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "roles", "admin"), esSig),
		"nbf in future":          testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "nbf", t0.Add(31*time.Second).Unix()), esSig),
		"iat in future":          testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "iat", t0.Add(31*time.Second).Unix(), "nbf", nil), esSig),
		"expired and wrong iss":  testkit.Encode(t, hdr(verify.ES256, es.ID), testkit.Edit(validPayload(), "iss", "x", "exp", t0.Add(-time.Hour).Unix()), esSig),
		"tampered payload":       strings.Split(good, ".")[0] + "." + b64([]byte(`{"iss":"`+testIss+`","sub":"admin"}`)) + "." + strings.Split(good, ".")[2],
		"tampered signature":     good[:len(good)-2] + flip(good[len(good)-2:]),
		"truncated signature":    good[:len(good)-10],
		"empty signature":        good[:strings.LastIndexByte(good, '.')+1],
		"padded":                 good + "==",
		"two parts":              good[:strings.LastIndexByte(good, '.')],
		"four parts":             good + ".x",
		"empty":                  "",
		"garbage":                "not.a.jwt",
		"header not json":        b64([]byte("{")) + "." + strings.SplitN(good, ".", 2)[1],
		"refresh token":          "rt_" + strings.Repeat("a", 100),
		"signature std base64":   strings.Replace(strings.Replace(good, "-", "+", -1), "_", "/", -1) + "+",
	}
	for name, tok := range cases {
		_, err := iss.Verify(tok, t0)
		if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrExpired) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestVerifyTime(t *testing.T) {
	iss := newTestIssuer(t, verify.ES256)
	tok, err := iss.Issue(fullInput, t0)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(15 * time.Minute)
	for _, c := range []struct {
		at      time.Time
		wantErr error
	}{
		{t0, nil},
		{t0.Add(-AccessLeeway), nil}, // clock skew: nbf/iat within leeway
		{t0.Add(-AccessLeeway - time.Second), ErrInvalid}, // not yet valid
		{exp, nil},
		{exp.Add(AccessLeeway - time.Second), nil},
		{exp.Add(AccessLeeway), ErrExpired},
		{exp.Add(24 * time.Hour), ErrExpired},
	} {
		_, err := iss.Verify(tok, c.at)
		if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("Verify at %v: err = %v, want %v", c.at.Sub(t0), err, c.wantErr)
		}
		if errors.Is(err, ErrExpired) && errors.Is(err, ErrInvalid) {
			t.Errorf("error is both expired and invalid: %v", err)
		}
	}
}

// The audience check accepts any configured audience; with none configured
// it is skipped; a token with a lone string aud is accepted.
func TestVerifyAudience(t *testing.T) {
	es := testSet(t, verify.ES256).Current()
	multi := NewIssuer(testIss, []string{"a", "b"}, time.Minute, StaticKeys{testSet(t, verify.ES256)})
	noAud := NewIssuer(testIss, nil, time.Minute, StaticKeys{testSet(t, verify.ES256)})
	hdr := map[string]any{"alg": verify.ES256, "kid": es.ID, "typ": "at+jwt"}
	esSig := testkit.Signer(t, es.Method, es.Signer)
	for _, c := range []struct {
		aud   any
		multi bool
	}{
		{"b", true},
		{[]string{"x", "a"}, true},
		{[]string{"x"}, false},
		{nil, false},
	} {
		p := validPayload()
		if c.aud == nil {
			delete(p, "aud")
		} else {
			p["aud"] = c.aud
		}
		tok := testkit.Encode(t, hdr, p, esSig)
		if _, err := multi.Verify(tok, t0); (err == nil) != c.multi {
			t.Errorf("aud %v: multi err = %v", c.aud, err)
		}
		if _, err := noAud.Verify(tok, t0); err != nil {
			t.Errorf("aud %v: no-aud issuer: %v", c.aud, err)
		}
	}
	// typ may be the full media type, in any case.
	tok := testkit.Encode(t, map[string]any{"alg": verify.ES256, "kid": es.ID, "typ": "Application/AT+JWT"}, validPayload(), esSig)
	if _, err := NewIssuer(testIss, []string{testAud}, time.Minute, StaticKeys{testSet(t, verify.ES256)}).Verify(tok, t0); err != nil {
		t.Errorf("typ application/at+jwt: %v", err)
	}
}

// rotating is a KeySource a test can swap.
type rotating struct{ p atomic.Pointer[keys.Set] }

func (r *rotating) Keys() *keys.Set { return r.p.Load() }

// Swapping the key set changes the signing key and which tokens verify.
func TestKeyRotation(t *testing.T) {
	oldKey := testSet(t, verify.ES256).Current()
	newKey, _ := keys.Generate(verify.EdDSA)
	src := &rotating{}
	src.p.Store(testSet(t, verify.ES256))
	iss := NewIssuer(testIss, []string{testAud}, time.Minute, src)
	oldTok, _ := iss.Issue(fullInput, t0)

	both, _ := keys.NewSet(newKey, oldKey)
	src.p.Store(both)
	newTok, _ := iss.Issue(fullInput, t0)
	if !strings.HasPrefix(newTok, iss.header(newKey).encoded) {
		t.Error("new token not signed by the new key")
	}
	for _, tok := range []string{oldTok, newTok} {
		if _, err := iss.Verify(tok, t0); err != nil {
			t.Errorf("during overlap: %v", err)
		}
	}
	onlyNew, _ := keys.NewSet(newKey)
	src.p.Store(onlyNew)
	if _, err := iss.Verify(oldTok, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("retired key still verifies: %v", err)
	}
	if _, err := iss.Verify(newTok, t0); err != nil {
		t.Error(err)
	}
}

func TestConcurrentIssueVerify(t *testing.T) {
	src := &rotating{}
	src.p.Store(testSet(t, verify.EdDSA))
	iss := NewIssuer(testIss, []string{testAud}, time.Minute, src)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if g == 0 && j == 25 {
					both, _ := keys.NewSet(testSet(t, verify.ES256).Current(), testSet(t, verify.EdDSA).Current())
					src.p.Store(both)
				}
				tok, err := iss.Issue(fullInput, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := iss.Verify(tok, t0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkIssueES256(b *testing.B) { benchIssue(b, verify.ES256) }
func BenchmarkIssueEdDSA(b *testing.B) { benchIssue(b, verify.EdDSA) }
func BenchmarkIssueRS256(b *testing.B) { benchIssue(b, verify.RS256) }

func benchIssue(b *testing.B, alg string) {
	iss := newTestIssuer(b, alg)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Issue(fullInput, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, verify.ES256) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, verify.EdDSA) }

func benchVerify(b *testing.B, alg string) {
	iss := newTestIssuer(b, alg)
	now := time.Now()
	tok, err := iss.Issue(fullInput, now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGolangJWTSignES256 is the baseline: the same token made the
// usual golang-jwt way.
func BenchmarkGolangJWTSignES256(b *testing.B) {
	k := testSet(b, verify.ES256).Current()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": testIss, "sub": fullInput.Subject, "aud": []string{testAud, "https://other.example.com"},
			"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": NewID(),
			"client_id": fullInput.ClientID, "scope": fullInput.Scope, "roles": fullInput.Roles, "sid": fullInput.SessionID,
		})
		tok.Header["kid"] = k.ID
		tok.Header["typ"] = AccessTokenType
		if _, err := tok.SignedString(k.Signer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGolangJWTVerifyES256 is the baseline for Verify: a bare
// golang-jwt parse with the key known in advance.
func BenchmarkGolangJWTVerifyES256(b *testing.B) {
	iss := newTestIssuer(b, verify.ES256)
	k := testSet(b, verify.ES256).Current()
	tok, _ := iss.Issue(fullInput, time.Now())
	p := jwt.NewParser(jwt.WithValidMethods([]string{verify.ES256}))
	kf := func(*jwt.Token) (any, error) { return k.Public, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseWithClaims(tok, jwt.MapClaims{}, kf); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzAccessVerify(f *testing.F) {
	iss := newTestIssuer(f, verify.ES256)
	tok, _ := iss.Issue(fullInput, t0)
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := iss.Verify(s, t0)
		if err == nil && s != tok {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}
