package verify_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
)

// The fuzz tests compare Verify with an oracle: golang-jwt, an independent
// JWT implementation, configured for tokend's profile of RFC 9068. They
// must give the same verdict (accept or refuse) on every input. Seeds are
// in the code and in testdata/fuzz.

// Fixed inputs, so that seeds stay valid: an Ed25519 key from a fixed seed
// (Ed25519 signatures are deterministic), an issuer and a clock.
const (
	oracleIssuer   = "https://tokend.test"
	oracleAudience = "orders"
	oracleKid      = "k1"
	oracleNow      = 1767225600 // 2026-01-01T00:00:00Z
)

var oracleKey = ed25519.NewKeyFromSeed([]byte("tokend verify fuzz oracle key 01"))

func init() {
	// golang-jwt truncates NumericDates to whole seconds by default;
	// RFC 7519 §2 allows fractions, and verify keeps them.
	jwt.TimePrecision = time.Nanosecond
}

type oracleKeys struct{}

func (oracleKeys) LookupKey(kid string) (verify.Key, bool) {
	if kid != oracleKid {
		return verify.Key{}, false
	}
	return verify.Key{Algorithm: verify.EdDSA, Public: oracleKey.Public()}, true
}

func oracleVerifier(t testing.TB) *verify.Verifier {
	t.Helper()
	v, err := verify.NewWithKeys(oracleIssuer, oracleKeys{}, verify.WithAudience(oracleAudience),
		verify.WithClock(func() time.Time { return time.Unix(oracleNow, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// oracleSign signs header and payload, as given, with the oracle key.
func oracleSign(header, payload []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc(header) + "." + enc(payload)
	return signing + "." + enc(ed25519.Sign(oracleKey, []byte(signing)))
}

// oracleAccepts is golang-jwt's verdict on tok. Where RFC 9068 or tokend's
// profile asks more than golang-jwt checks, the rule is written here, next
// to the call, each once.
func oracleAccepts(tok string) bool {
	// Size: verify refuses tokens over 16 KiB.
	if len(tok) > 16<<10 {
		return false
	}
	// Compact serialization: base64url and dots only. (encoding/base64
	// skips CR and LF, so golang-jwt would take a line-broken signature.)
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256", "EdDSA", "RS256"}),
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(oracleIssuer),
		jwt.WithAudience(oracleAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(verify.DefaultLeeway),
		jwt.WithTimeFunc(func() time.Time { return time.Unix(oracleNow, 0) }),
	)
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		// RFC 9068 §4: typ at+jwt; RFC 7515 §4.1.11: refuse unknown crit.
		typ, _ := t.Header["typ"].(string)
		if typ = strings.ToLower(typ); typ != "at+jwt" && typ != "application/at+jwt" {
			return nil, errors.New("typ")
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("crit")
		}
		// The alg is the key's own.
		if kid, _ := t.Header["kid"].(string); kid != oracleKid || t.Method.Alg() != "EdDSA" {
			return nil, errors.New("kid")
		}
		return oracleKey.Public(), nil
	})
	if err != nil {
		return false
	}
	// RFC 9068 §2.2: sub, client_id, jti and iat are required (exp is,
	// by WithExpirationRequired).
	for _, name := range []string{"sub", "client_id", "jti"} {
		if s, _ := claims[name].(string); s == "" {
			return false
		}
	}
	if _, ok := claims["iat"]; !ok {
		return false
	}
	// Claims verify reads have one type: scope and sid strings, roles an
	// array of strings (null counts as absent).
	for _, name := range []string{"scope", "sid"} {
		if v, ok := claims[name]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return false
			}
		}
	}
	if v, ok := claims["roles"]; ok && v != nil {
		a, ok := v.([]any)
		if !ok {
			return false
		}
		for _, r := range a {
			if _, ok := r.(string); !ok {
				return false
			}
		}
	}
	// A token bound to a key (cnf) needs its proof, which Verify does
	// not have: refused (RFC 9449 §7.1; null counts as absent).
	if v, ok := claims["cnf"]; ok && v != nil {
		return false
	}
	// act (RFC 8693 §4.1): null, or an object with a sub string and
	// maybe an act of its own, at most 32 deep.
	if !validActor(claims["act"], 1) {
		return false
	}
	// NumericDates are bounded to ±1e15 s (golang-jwt takes any float64),
	// and a null one is refused (golang-jwt does; as absent is meant
	// "no member").
	for _, name := range []string{"exp", "iat", "nbf"} {
		if v, ok := claims[name]; ok {
			if f, ok := v.(float64); !ok || math.Abs(f) > 1e15 {
				return false
			}
		}
	}
	return true
}

// validActor: v is absent, or an actor object as verify reads act.
func validActor(v any, depth int) bool {
	if v == nil {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok || depth > 32 {
		return false
	}
	if sub, _ := m["sub"].(string); sub == "" {
		return false
	}
	return validActor(m["act"], depth+1)
}

// compare fails t when Verify and the oracle disagree on tok.
func compare(t *testing.T, v *verify.Verifier, tok string) error {
	t.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err != nil && !errors.Is(err, verify.ErrInvalid) && !errors.Is(err, verify.ErrExpired) {
		t.Fatalf("%q: error %v is neither ErrInvalid nor ErrExpired", tok, err)
	}
	if want := oracleAccepts(tok); want != (err == nil) {
		t.Fatalf("verify and golang-jwt disagree on %q: verify %v (%+v), golang-jwt accepts: %v", tok, err, c, want)
	}
	return err
}

// goodOracleClaims are claims tokend would sign, at the oracle's clock.
func goodOracleClaims() map[string]any {
	return map[string]any{
		"iss": oracleIssuer, "sub": "user-1", "aud": []string{oracleAudience}, "exp": oracleNow + 900,
		"iat": oracleNow, "nbf": oracleNow, "jti": "jti-1", "client_id": "web", "scope": "read",
		"roles": []string{"user"}, "sid": "sess-1",
	}
}

var goodOracleHeader = map[string]any{"alg": "EdDSA", "kid": oracleKid, "typ": "at+jwt"}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// claimSeeds are payloads on which a differential is easy to have: types,
// ranges and spellings of claims.
var claimSeeds = []string{
	string(mustJSON(goodOracleClaims())),
	string(mustJSON(with(goodOracleClaims(), "exp", "1767226500"))), // exp as a string
	string(mustJSON(with(goodOracleClaims(), "iat", "1767225600"))), // iat as a string
	string(mustJSON(with(goodOracleClaims(), "nbf", "1767225600"))),
	string(mustJSON(with(goodOracleClaims(), "exp", 1e16))),
	string(mustJSON(with(goodOracleClaims(), "exp", -1e16))),
	string(mustJSON(with(goodOracleClaims(), "exp", oracleNow-30))),
	string(mustJSON(with(goodOracleClaims(), "exp", oracleNow-29.5))),
	string(mustJSON(with(goodOracleClaims(), "iat", oracleNow+30.5))),
	string(mustJSON(with(goodOracleClaims(), "nbf", oracleNow+30))),
	string(mustJSON(with(goodOracleClaims(), "iat", 0, "nbf", 0))),
	string(mustJSON(with(goodOracleClaims(), "aud", oracleAudience))),
	string(mustJSON(with(goodOracleClaims(), "aud", []any{oracleAudience, nil}))),
	string(mustJSON(with(goodOracleClaims(), "aud", []any{oracleAudience, 7}))),
	string(mustJSON(with(goodOracleClaims(), "roles", nil, "scope", nil))),
	string(mustJSON(with(goodOracleClaims(), "roles", "admin"))),
	string(mustJSON(with(goodOracleClaims(), "scope", 1))),
	string(mustJSON(with(goodOracleClaims(), "cnf", map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}))),
	string(mustJSON(with(goodOracleClaims(), "act", map[string]any{"sub": "orders", "act": map[string]any{"sub": "web"}}))),
	string(mustJSON(with(goodOracleClaims(), "act", map[string]any{"act": map[string]any{"sub": "web"}}))),
	string(mustJSON(with(goodOracleClaims(), "act", "orders"))),
	`{"iss":"https://tokend.test","sub":"u","aud":"orders","exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web","cnf":null,"act":null}`,
	`{"iss":"https://tokend.test","sub":"user-1","aud":["orders"],"exp":1767226500,"iat":1767225600,"nbf":null,"jti":"j","client_id":"web"}`,
	`{"iss":"https://tokend.test","ISS":"https://evil.test","sub":"user-1","aud":"orders","exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web"}`,
	`{"Iss":"https://tokend.test","sub":"user-1","aud":"orders","exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web"}`,
	`{"iss":"https://evil.test","iss":"https://tokend.test","sub":"user-1","aud":"orders","exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web"}`,
	`{"\u0069ss":"https://tokend.test","sub":"us\u0065r-1","aud":["orders"],"exp":1.7672265e9,"iat":17672256E2,"jti":"j","client_id":"web"}`,
	` { "iss" : "https://tokend.test" , "sub" : "u" , "aud" : [ "orders" ] , "exp" : 1767226500 , "iat" : 1767225600 , "jti" : "j" , "client_id" : "web" } `,
	`{"iss":"https://tokend.test","sub":"u","aud":["orders"],"exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web"} x`,
	`{"iss":"https://tokend.test","sub":"u","aud":["orders"],"exp":1767226500,"iat":1767225600,"jti":"j","client_id":"web","x":{"a":[1,"]}"]}}`,
	`[]`, `null`, `"x"`, ``,
}

// headerSeeds are JOSE headers, good and bad.
var headerSeeds = []string{
	string(mustJSON(goodOracleHeader)),
	`{"alg":"EdDSA","kid":"k1","typ":"application/AT+JWT"}`,
	`{"alg":"EdDSA","kid":"k1","typ":"JWT"}`,
	`{"alg":"EdDSA","kid":"k1","typ":"at+jwt","TYP":"JWT"}`,
	`{"alg":"EdDSA","kid":"k1","typ":"at+jwt","crit":null}`,
	`{"alg":"EdDSA","kid":"k1","Typ":"at+jwt"}`,
	`{"alg":"EdDSA","kid":"k1","typ":"at+jwt","alg":"ES256"}`,
	`{"alg":"ES256","kid":"k1","typ":"at+jwt"}`,
	`{"alg":"none","kid":"k1","typ":"at+jwt"}`,
	`{"alg":"EdDSA","kid":1,"typ":"at+jwt"}`,
	`{"alg":"EdDSA","kid":"k1","typ":null}`,
	`{"alg":"Ed\u0044SA","kid":"k1","typ":"at+jwt"}`,
}

// FuzzVerifyClaims signs fuzzed headers and payloads with the trusted key,
// which is how claim rules are reached at all: verify and golang-jwt must
// agree on each. A mismatch found here once was a parser differential in
// tokend (introspection took exp as a string, and exp = 1e16).
func FuzzVerifyClaims(f *testing.F) {
	for _, h := range headerSeeds {
		f.Add(h, claimSeeds[0])
	}
	for _, p := range claimSeeds {
		f.Add(headerSeeds[0], p)
	}
	v := oracleVerifier(f)
	f.Fuzz(func(t *testing.T, header, payload string) {
		compare(t, v, oracleSign([]byte(header), []byte(payload)))
	})
}

// FuzzVerify fuzzes whole token strings: besides agreeing with the
// oracle, Verify never accepts anything but the genuine tokens the seeds
// were signed as (a mutation of one — another encoding of the same bytes
// included — never verifies).
func FuzzVerify(f *testing.F) {
	good := oracleSign(mustJSON(goodOracleHeader), []byte(claimSeeds[0]))
	audString := oracleSign(mustJSON(goodOracleHeader), []byte(claimSeeds[11])) // aud as a lone string: valid
	genuine := map[string]bool{good: true, audString: true}
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(audString)
	f.Add(oracleSign(mustJSON(with(goodOracleHeader, "alg", "none")), []byte(claimSeeds[0])))
	f.Add(oracleSign(mustJSON(with(goodOracleHeader, "kid", "../../etc/passwd")), []byte(claimSeeds[0])))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "=")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2][:20] + "\n" + parts[2][20:])
	f.Add(parts[0] + ".." + parts[2])
	f.Add("rt_" + strings.Repeat("a", 97))
	f.Add("")
	v := oracleVerifier(f)
	f.Fuzz(func(t *testing.T, s string) {
		if err := compare(t, v, s); err == nil && !genuine[s] {
			t.Fatalf("accepted %q", s)
		}
	})
}
