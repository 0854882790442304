package dpop_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/verify/dpop"
)

// The examples of RFC 9449: the proof of a token request (§4.1, Figure 3)
// and of a resource request with its access token (§7.1, Figure 13), made
// with the key whose thumbprint is the cnf.jkt of §6.1's example.
const (
	rfcTokenProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ" +
		".2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
	rfcResourceProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9" +
		".2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
	rfcAccessToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
	rfcJKT         = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
)

func TestRFC9449Examples(t *testing.T) {
	p, err := dpop.Check(rfcTokenProof, dpop.Params{Method: "POST", URL: "https://server.example.com/token", Now: time.Unix(1562262616, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if p.JKT != rfcJKT || p.JTI != "-BwC3ESc6acc2lTc" || p.Alg != "ES256" || p.Method != "POST" ||
		p.URL != "https://server.example.com/token" || !p.IssuedAt.Equal(time.Unix(1562262616, 0)) ||
		!p.Expiry.Equal(time.Unix(1562262616, 0).Add(dpop.DefaultMaxAge+dpop.DefaultSkew)) || len(p.ID) != 43 {
		t.Fatalf("%+v", p)
	}
	// The server's URL spelled otherwise, and with a query: the same htu.
	q, err := dpop.Check(rfcTokenProof, dpop.Params{Method: "POST", URL: "HTTPS://Server.Example.COM:443/./token?grant_type=x#f", Now: time.Unix(1562262616, 0)})
	if err != nil || q.ID != p.ID {
		t.Fatalf("normalised URL: %v %+v", err, q)
	}

	r, err := dpop.Check(rfcResourceProof, dpop.Params{
		Method: "GET", URL: "https://resource.example.org/protectedresource", AccessToken: rfcAccessToken,
		Now: time.Unix(1562262618, 0), JKT: rfcJKT,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.JKT != rfcJKT || r.JTI != "e1j3V_bKic8-LAEB" || r.ID == p.ID {
		t.Fatalf("%+v", r)
	}
	// ath is SHA-256 of the token as RFC 9449 §7.1 computes it.
	sum := sha256.Sum256([]byte(rfcAccessToken))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
		t.Fatal("ath")
	}
	// Another token: the proof is not for it.
	_, err = dpop.Check(rfcResourceProof, dpop.Params{
		Method: "GET", URL: "https://resource.example.org/protectedresource", AccessToken: rfcAccessToken + "x",
		Now: time.Unix(1562262618, 0),
	})
	wantRefusal(t, err, dpop.ErrInvalidProof, "ath")
}

// RFC 7638 §3.1 (RSA), RFC 8037 Appendix A.3 (Ed25519), and the EC key of
// RFC 9449's examples.
func TestThumbprintVectors(t *testing.T) {
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rsaKey := &rsa.PublicKey{E: 65537, N: new(big.Int).SetBytes(dec("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"))}
	ecKey := &ecdsa.PublicKey{Curve: elliptic.P256(),
		X: new(big.Int).SetBytes(dec("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs")),
		Y: new(big.Int).SetBytes(dec("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"))}
	for _, c := range []struct {
		key  any
		want string
	}{
		{rsaKey, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{ed25519.PublicKey(dec("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
		{ecKey, rfcJKT},
	} {
		if got, err := dpop.Thumbprint(c.key); err != nil || got != c.want {
			t.Errorf("%T: %q %v, want %q", c.key, got, err, c.want)
		}
	}
	if _, err := dpop.Thumbprint(&ecdsa.PublicKey{Curve: elliptic.P384(), X: big.NewInt(1), Y: big.NewInt(1)}); err == nil {
		t.Error("P-384 key")
	}
	if _, err := dpop.Thumbprint("key"); err == nil {
		t.Error("a string")
	}
}

// reasonText is what a Reason may hold: an RFC 6750 §3 error_description.
var reasonText = regexp.MustCompile(`^[\x20\x21\x23-\x5B\x5D-\x7E]+$`)

// wantRefusal fails unless err matches kind (and not the other kind) with
// a Reason containing reason.
func wantRefusal(t *testing.T, err, kind error, reason string) {
	t.Helper()
	other := dpop.ErrUseNonce
	if kind == dpop.ErrUseNonce {
		other = dpop.ErrInvalidProof
	}
	var de *dpop.Error
	if !errors.Is(err, kind) || errors.Is(err, other) || !errors.As(err, &de) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	if !strings.Contains(de.Reason, reason) || !reasonText.MatchString(de.Reason) {
		t.Fatalf("reason %q, want one with %q", de.Reason, reason)
	}
}

const (
	testURL   = "https://api.example.com/orders"
	testToken = "an.access.token"
)

var testNow = time.Unix(1767225600, 0)

func goodClaims() map[string]any {
	return map[string]any{"jti": "jti-1", "htm": "GET", "htu": testURL, "iat": testNow.Unix()}
}

func params() dpop.Params {
	return dpop.Params{Method: "GET", URL: testURL, Now: testNow}
}

func TestCheckAccepts(t *testing.T) {
	es := key(t, "ES256", "a")
	for _, c := range []struct {
		name   string
		proof  string
		params func(*dpop.Params)
	}{
		{"EdDSA", key(t, "EdDSA", "a").sign(t, key(t, "EdDSA", "a").header(), goodClaims()), nil},
		{"RS256 when allowed", key(t, "RS256", "a").sign(t, key(t, "RS256", "a").header(), goodClaims()),
			func(p *dpop.Params) { p.Algorithms = []string{"ES256", "RS256"} }},
		{"typ with application/ and another case", es.sign(t, with(es.header(), "typ", "application/DPoP+JWT"), goodClaims()), nil},
		{"jwk with alg, use and kid", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "alg", "ES256", "use", "sig", "kid", "k")), goodClaims()), nil},
		{"extra header and claims", es.sign(t, with(es.header(), "kid", "x"), with(goodClaims(), "extra", []int{1})), nil},
		{"iat at the oldest", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(-dpop.DefaultMaxAge).Unix())), nil},
		{"iat at the latest", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(dpop.DefaultSkew).Unix())), nil},
		{"iat fractional", es.sign(t, es.header(), with(goodClaims(), "iat", float64(testNow.Unix())+0.5)), nil},
		{"a longer window", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(-5*time.Minute).Unix())),
			func(p *dpop.Params) { p.MaxAge = 5 * time.Minute }},
		{"ath without an access token is not looked at", es.sign(t, es.header(), with(goodClaims(), "ath", "whatever")), nil},
		{"ath of the token", es.sign(t, es.header(), with(goodClaims(), "ath", ath(testToken))),
			func(p *dpop.Params) { p.AccessToken = testToken }},
		{"htu spelled otherwise", es.sign(t, es.header(), with(goodClaims(), "htu", "HTTPS://API.example.com:443/x/../%6Frders?q=1#f")), nil},
		{"a repeated member counts with its last value", es.sign(t, es.header(), `{"jti":"a","htm":"POST","htm":"GET","htu":"`+testURL+`","iat":1767225600}`), nil},
		{"nonce accepted", es.sign(t, es.header(), with(goodClaims(), "nonce", "n-1")),
			func(p *dpop.Params) {
				p.Nonce = func(n string, _ time.Time) error {
					if n != "n-1" {
						return errors.New("no")
					}
					return nil
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := params()
			if c.params != nil {
				c.params(&p)
			}
			got, err := dpop.Check(c.proof, p)
			if err != nil {
				t.Fatal(err)
			}
			if p.JKT == "" {
				p.JKT = got.JKT
			}
			// The thumbprint is the key's.
			var k any
			for _, name := range []string{"ES256", "EdDSA", "RS256"} {
				if strings.Contains(c.name, name) {
					k = key(t, name, "a").Signer.Public()
				}
			}
			if k == nil {
				k = es.Signer.Public()
			}
			if want, _ := dpop.Thumbprint(k); got.JKT != want {
				t.Fatalf("JKT %q, want %q", got.JKT, want)
			}
		})
	}
}

func ath(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return b64(sum[:])
}

// Every refusal, with its kind and reason.
func TestCheckRefuses(t *testing.T) {
	es, ed, rs := key(t, "ES256", "a"), key(t, "EdDSA", "a"), key(t, "RS256", "a")
	good := es.sign(t, es.header(), goodClaims())
	parts := strings.Split(good, ".")
	other := key(t, "ES256", "b")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallJWK := map[string]any{"kty": "RSA", "n": b64(small.N.Bytes()), "e": "AQAB"}
	offCurve := with(es.jwk(), "y", b64(make([]byte, 32)))
	nonceErr := errors.New("no nonce")
	for _, c := range []struct {
		name, proof string
		params      func(*dpop.Params)
		kind        error
		reason      string
	}{
		// Shape.
		{"empty", "", nil, dpop.ErrInvalidProof, "missing"},
		{"too large", good + strings.Repeat("A", dpop.MaxProofBytes), nil, dpop.ErrInvalidProof, "too large"},
		{"two segments", parts[0] + "." + parts[1], nil, dpop.ErrInvalidProof, "compact JWS"},
		{"four segments", good + ".x", nil, dpop.ErrInvalidProof, "compact JWS"},
		{"no signature", parts[0] + "." + parts[1] + ".", nil, dpop.ErrInvalidProof, "compact JWS"},
		{"no payload", parts[0] + ".." + parts[2], nil, dpop.ErrInvalidProof, "compact JWS"},
		{"padding", good + "=", nil, dpop.ErrInvalidProof, "compact JWS"},
		{"a line break", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], nil, dpop.ErrInvalidProof, "compact JWS"},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, nil, dpop.ErrInvalidProof, "compact JWS"},
		{"non-canonical base64url", "e31." + parts[1] + "." + parts[2], nil, dpop.ErrInvalidProof, "base64url"},
		// Header.
		{"header not JSON", b64([]byte("hi")) + "." + parts[1] + "." + parts[2], nil, dpop.ErrInvalidProof, "header is not a JSON object"},
		{"header an array", es.sign(t, `[]`, goodClaims()), nil, dpop.ErrInvalidProof, "header is not a JSON object"},
		{"header with spaces around", es.sign(t, " "+string(toJSON(es.header())), goodClaims()), nil, dpop.ErrInvalidProof, "header is not a JSON object"},
		{"claims with spaces around", es.sign(t, es.header(), string(toJSON(goodClaims()))+"\n"), nil, dpop.ErrInvalidProof, "claims are not a JSON object"},
		{"no typ", es.sign(t, with(es.header(), "typ", nil), goodClaims()), nil, dpop.ErrInvalidProof, "typ"},
		{"typ JWT", es.sign(t, with(es.header(), "typ", "JWT"), goodClaims()), nil, dpop.ErrInvalidProof, "typ"},
		{"typ at+jwt", es.sign(t, with(es.header(), "typ", "at+jwt"), goodClaims()), nil, dpop.ErrInvalidProof, "typ"},
		{"typ a number", es.sign(t, with(es.header(), "typ", 1), goodClaims()), nil, dpop.ErrInvalidProof, "wrong type"},
		{"alg none", b64(toJSON(with(es.header(), "alg", "none"))) + "." + parts[1] + ".e30", nil, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"alg HS256", b64(toJSON(with(es.header(), "alg", "HS256"))) + "." + parts[1] + "." + parts[2], nil, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"alg ES384", b64(toJSON(with(es.header(), "alg", "ES384"))) + "." + parts[1] + "." + parts[2], nil, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"RS256 not allowed by default", rs.sign(t, rs.header(), goodClaims()), nil, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"EdDSA not on a narrowed list", ed.sign(t, ed.header(), goodClaims()), func(p *dpop.Params) { p.Algorithms = []string{"ES256"} }, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"none on the list does nothing", b64(toJSON(with(es.header(), "alg", "none"))) + "." + parts[1] + ".e30", func(p *dpop.Params) { p.Algorithms = []string{"none", "HS256"} }, dpop.ErrInvalidProof, "algorithm is not accepted"},
		{"crit", es.sign(t, with(es.header(), "crit", []string{"b64"}, "b64", false), goodClaims()), nil, dpop.ErrInvalidProof, "critical"},
		{"no jwk", es.sign(t, with(es.header(), "jwk", nil), goodClaims()), nil, dpop.ErrInvalidProof, "no jwk"},
		{"jwk null", es.sign(t, `{"typ":"dpop+jwt","alg":"ES256","jwk":null}`, goodClaims()), nil, dpop.ErrInvalidProof, "no jwk"},
		{"jwk a string", es.sign(t, with(es.header(), "jwk", "key"), goodClaims()), nil, dpop.ErrInvalidProof, "wrong type"},
		{"jwk with d", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "d", b64(es.Signer.(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32))))), goodClaims()), nil, dpop.ErrInvalidProof, "private key material"},
		{"jwk with an empty d", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "d", "")), goodClaims()), nil, dpop.ErrInvalidProof, "private key material"},
		{"RSA jwk with p", rs.sign(t, with(rs.header(), "jwk", with(rs.jwk(), "p", "AQAB")), goodClaims()), func(p *dpop.Params) { p.Algorithms = []string{"RS256"} }, dpop.ErrInvalidProof, "private key material"},
		{"symmetric jwk", es.sign(t, with(es.header(), "alg", "ES256", "jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), goodClaims()), nil, dpop.ErrInvalidProof, "private key material"},
		{"jwk member of the wrong type", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "x", 1)), goodClaims()), nil, dpop.ErrInvalidProof, "jwk has a member of the wrong type"},
		{"point off the curve", es.sign(t, with(es.header(), "jwk", offCurve), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"short coordinate", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "x", b64(make([]byte, 31)))), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"P-384", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "crv", "P-384")), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"X25519", ed.sign(t, with(ed.header(), "jwk", with(ed.jwk(), "crv", "X25519")), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"kty unknown", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "kty", "ec")), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"key of another alg", es.sign(t, with(es.header(), "jwk", ed.jwk()), goodClaims()), nil, dpop.ErrInvalidProof, "does not fit its algorithm"},
		{"jwk alg other than the header's", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "alg", "RS256")), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"jwk for encryption", es.sign(t, with(es.header(), "jwk", with(es.jwk(), "use", "enc")), goodClaims()), nil, dpop.ErrInvalidProof, "not a valid public key"},
		{"RSA of 1024 bits", rs.sign(t, with(rs.header(), "jwk", smallJWK), goodClaims()), func(p *dpop.Params) { p.Algorithms = []string{"RS256"} }, dpop.ErrInvalidProof, "not a valid public key"},
		{"RSA exponent with a leading zero", rs.sign(t, with(rs.header(), "jwk", with(rs.jwk(), "e", "AAEAAQ")), goodClaims()), func(p *dpop.Params) { p.Algorithms = []string{"RS256"} }, dpop.ErrInvalidProof, "not a valid public key"},
		// Signature.
		{"signature of another key", other.sign(t, es.header(), goodClaims()), nil, dpop.ErrInvalidProof, "signature is invalid"},
		{"signature of other claims", parts[0] + "." + b64(toJSON(with(goodClaims(), "jti", "jti-2"))) + "." + parts[2], nil, dpop.ErrInvalidProof, "signature is invalid"},
		{"short signature", parts[0] + "." + parts[1] + "." + parts[2][:40], nil, dpop.ErrInvalidProof, "signature is invalid"},
		// Claims.
		{"claims not JSON", es.sign(t, es.header(), `{"jti"`), nil, dpop.ErrInvalidProof, "claims are not a JSON object"},
		{"no jti", es.sign(t, es.header(), with(goodClaims(), "jti", nil)), nil, dpop.ErrInvalidProof, "no jti"},
		{"jti empty", es.sign(t, es.header(), with(goodClaims(), "jti", "")), nil, dpop.ErrInvalidProof, "no jti"},
		{"jti null", es.sign(t, es.header(), `{"jti":null,"htm":"GET","htu":"`+testURL+`","iat":1767225600}`), nil, dpop.ErrInvalidProof, "no jti"},
		{"jti too long", es.sign(t, es.header(), with(goodClaims(), "jti", strings.Repeat("j", dpop.MaxJTIBytes+1))), nil, dpop.ErrInvalidProof, "jti is too long"},
		{"jti a number", es.sign(t, es.header(), with(goodClaims(), "jti", 7)), nil, dpop.ErrInvalidProof, "wrong type"},
		{"no htm", es.sign(t, es.header(), with(goodClaims(), "htm", nil)), nil, dpop.ErrInvalidProof, "no htm"},
		{"no htu", es.sign(t, es.header(), with(goodClaims(), "htu", nil)), nil, dpop.ErrInvalidProof, "no htu"},
		{"no iat", es.sign(t, es.header(), with(goodClaims(), "iat", nil)), nil, dpop.ErrInvalidProof, "no iat"},
		{"iat a string", es.sign(t, es.header(), with(goodClaims(), "iat", "1767225600")), nil, dpop.ErrInvalidProof, "wrong type"},
		{"iat null", es.sign(t, es.header(), `{"jti":"j","htm":"GET","htu":"`+testURL+`","iat":null}`), nil, dpop.ErrInvalidProof, "wrong type"},
		{"another method", es.sign(t, es.header(), with(goodClaims(), "htm", "POST")), nil, dpop.ErrInvalidProof, "htm"},
		{"the method in lower case", es.sign(t, es.header(), with(goodClaims(), "htm", "get")), nil, dpop.ErrInvalidProof, "htm"},
		{"another path", es.sign(t, es.header(), with(goodClaims(), "htu", testURL+"/1")), nil, dpop.ErrInvalidProof, "htu"},
		{"another host", es.sign(t, es.header(), with(goodClaims(), "htu", "https://evil.example.com/orders")), nil, dpop.ErrInvalidProof, "htu"},
		{"another port", es.sign(t, es.header(), with(goodClaims(), "htu", "https://api.example.com:8443/orders")), nil, dpop.ErrInvalidProof, "htu"},
		{"http for https", es.sign(t, es.header(), with(goodClaims(), "htu", "http://api.example.com/orders")), nil, dpop.ErrInvalidProof, "htu"},
		{"user information", es.sign(t, es.header(), with(goodClaims(), "htu", "https://u@api.example.com/orders")), nil, dpop.ErrInvalidProof, "htu"},
		{"a relative htu", es.sign(t, es.header(), with(goodClaims(), "htu", "/orders")), nil, dpop.ErrInvalidProof, "htu"},
		{"an encoded slash is not a slash", es.sign(t, es.header(), with(goodClaims(), "htu", "https://api.example.com%2Forders")), nil, dpop.ErrInvalidProof, "htu"},
		{"the server's own URL is wrong", good, func(p *dpop.Params) { p.URL = "ftp://x" }, dpop.ErrInvalidProof, "server's own URL"},
		{"too old", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(-dpop.DefaultMaxAge-time.Second).Unix())), nil, dpop.ErrInvalidProof, "too old"},
		{"from the future", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(dpop.DefaultSkew+time.Second).Unix())), nil, dpop.ErrInvalidProof, "future"},
		{"a shorter window", es.sign(t, es.header(), with(goodClaims(), "iat", testNow.Add(-10*time.Second).Unix())), func(p *dpop.Params) { p.MaxAge = 5 * time.Second }, dpop.ErrInvalidProof, "too old"},
		{"no ath with an access token", good, func(p *dpop.Params) { p.AccessToken = testToken }, dpop.ErrInvalidProof, "no access token hash"},
		{"ath of another token", es.sign(t, es.header(), with(goodClaims(), "ath", ath("other"))), func(p *dpop.Params) { p.AccessToken = testToken }, dpop.ErrInvalidProof, "another access token"},
		{"another key than the bound one", good, func(p *dpop.Params) { p.JKT = rfcJKT }, dpop.ErrInvalidProof, "another key"},
		// Nonces.
		{"nonce refused", good, func(p *dpop.Params) { p.Nonce = func(string, time.Time) error { return nonceErr } }, dpop.ErrUseNonce, "nonce"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := params()
			if c.params != nil {
				c.params(&p)
			}
			got, err := dpop.Check(c.proof, p)
			if got != nil {
				t.Fatalf("accepted: %+v", got)
			}
			wantRefusal(t, err, c.kind, c.reason)
		})
	}
	// A nonce callback's own error is kept as the cause.
	p := params()
	p.Nonce = func(string, time.Time) error { return nonceErr }
	if _, err := dpop.Check(good, p); !errors.Is(err, nonceErr) {
		t.Fatalf("cause: %v", err)
	}
}
