// Package dpoptest holds the tests of the verify module's DPoP package
// (verify/dpop) that need what tokend's module has and verify's must not:
// the proof parser fuzzed against an independent JOSE implementation,
// lestrrat-go/jwx, as the oracle (this file), and a replay cache shared
// in Redis by the replicas of a service (redis_test.go).
//
// The rule checked on every input: whenever dpop.Check accepts a proof,
// jwx parses the same compact JWS, verifies its signature with the key of
// its own jwk header, and computes the same RFC 7638 thumbprint; and the
// RFC 9449 rules jwx does not know (typ, the allow-list, no private key
// members, the claims, htu normalised with net/url) hold — each written
// once, below, next to the call. What jwx refuses, dpop refuses.
package dpoptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/tokend/tokend/verify/dpop"
)

// Fixed inputs, so that the seeds stay valid: an Ed25519 key from a fixed
// seed (Ed25519 signatures are deterministic), the request, the clock.
const (
	method = "GET"
	target = "https://api.example.com/orders"
	token  = "an.access.token"
	now    = 1767225600 // 2026-01-01T00:00:00Z
)

var key = ed25519.NewKeyFromSeed([]byte("tokend dpop fuzz oracle key 0001"))

// ecKey is a P-256 key, fixed too (ECDSA signatures are not: they are
// made anew on each run, from the seeds' headers and claims).
var ecKey = func() *ecdsa.PrivateKey {
	d := sha256.Sum256([]byte("tokend dpop fuzz oracle P-256 key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		panic(err)
	}
	return k
}()

var params = dpop.Params{Method: method, URL: target, AccessToken: token, Now: time.Unix(now, 0)}

var b64 = base64.RawURLEncoding.EncodeToString

// sign signs header and claims, as given, with key.
func sign(header, claims string) string {
	signing := b64([]byte(header)) + "." + b64([]byte(claims))
	return signing + "." + b64(ed25519.Sign(key, []byte(signing)))
}

// signES256 signs header and claims, as given, with ecKey.
func signES256(header, claims string) string {
	signing := b64([]byte(header)) + "." + b64([]byte(claims))
	sig, err := jwt.SigningMethodES256.Sign(signing, ecKey)
	if err != nil {
		panic(err)
	}
	return signing + "." + b64(sig)
}

// oracle is jwx's verdict on proof: nil, and the thumbprint, if it
// accepts; otherwise why not.
func oracle(proof string) (string, error) {
	// Size and form, which jwx leaves to its caller: at most
	// MaxProofBytes, a compact JWS of base64url segments (jwx's decoder
	// would skip line breaks and accept padding).
	if len(proof) > dpop.MaxProofBytes {
		return "", errors.New("too large")
	}
	if strings.Count(proof, ".") != 2 || strings.Trim(proof, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return "", errors.New("not compact")
	}
	msg, err := jws.Parse([]byte(proof), jws.WithCompact())
	if err != nil {
		return "", fmt.Errorf("jwx parse: %w", err)
	}
	if len(msg.Signatures()) != 1 {
		return "", errors.New("signatures")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	// RFC 9449 §4.2: typ dpop+jwt (RFC 7515 §4.1.9: "application/" may
	// be left out; media types compare case-insensitively).
	typ, _ := hdr.Type()
	if t := strings.ToLower(typ); t != "dpop+jwt" && t != "application/dpop+jwt" {
		return "", errors.New("typ")
	}
	// The allow-list: ES256 and EdDSA.
	alg, ok := hdr.Algorithm()
	if !ok || (alg != jwa.ES256() && alg != jwa.EdDSA()) {
		return "", errors.New("alg")
	}
	// No extension we do not know.
	if _, ok := hdr.Critical(); ok {
		return "", errors.New("crit")
	}
	// RFC 9449 §4.2: the jwk is a public key: none of the private (or
	// symmetric) members of RFC 7518 §6. Read from the header's JSON as
	// written (jwx would make a private key of it).
	rawHeader, err := base64.RawURLEncoding.DecodeString(proof[:strings.IndexByte(proof, '.')])
	if err != nil {
		return "", err
	}
	var h struct {
		JWK map[string]json.RawMessage `json:"jwk"`
	}
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return "", err
	}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := h.JWK[m]; ok {
			return "", errors.New("private member " + m)
		}
	}
	k, ok := hdr.JWK()
	if !ok {
		return "", errors.New("no jwk")
	}
	if _, err := jws.Verify([]byte(proof), jws.WithKey(alg, k)); err != nil {
		return "", fmt.Errorf("jwx verify: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwx thumbprint: %w", err)
	}

	// The claims (RFC 9449 §4.2, §4.3), decoded by encoding/json.
	var c map[string]any
	dec := json.NewDecoder(strings.NewReader(string(msg.Payload())))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return "", errors.New("claims")
	}
	jti, _ := c["jti"].(string)
	htm, _ := c["htm"].(string)
	htu, _ := c["htu"].(string)
	ath, _ := c["ath"].(string)
	if jti == "" || len(jti) > dpop.MaxJTIBytes {
		return "", errors.New("jti")
	}
	if htm != method {
		return "", errors.New("htm")
	}
	if n, err := normalize(htu); err != nil || n != target {
		return "", fmt.Errorf("htu %q: %q %v", htu, n, err)
	}
	iat, ok := c["iat"].(json.Number)
	f, err := iat.Float64()
	if !ok || err != nil || math.Abs(f) > 1e15 || f < now-dpop.DefaultMaxAge.Seconds() || f > now+dpop.DefaultSkew.Seconds() {
		return "", errors.New("iat")
	}
	sum := sha256.Sum256([]byte(token))
	if ath != b64(sum[:]) {
		return "", errors.New("ath")
	}
	// Members dpop reads have their one type (null counts as absent).
	for _, m := range []string{"jti", "htm", "htu", "ath", "nonce"} {
		if v, ok := c[m]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return "", errors.New("type of " + m)
			}
		}
	}
	return b64(tp), nil
}

// normalize is RFC 9449 §4.3's normalisation written with net/url, apart
// from dpop's: RFC 3986 §6.2.2 and §6.2.3, no query or fragment, http(s)
// with a host and no user information.
func normalize(s string) (string, error) {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "https" && scheme != "http") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an http(s) URL")
	}
	host := strings.ToLower(u.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		host = "[" + ip.String() + "]"
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil {
			return "", err
		}
		port = strconv.Itoa(n)
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	// Percent-encodings in upper case, unreserved characters decoded.
	p := u.EscapedPath()
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		v, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		if c := byte(v); 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		i += 2
	}
	// Dot segments (RFC 3986 §5.2.4), as net/url resolves a reference.
	ref, err := url.Parse(b.String())
	if err != nil {
		return "", err
	}
	path := (&url.URL{Scheme: "https", Host: "h", Path: "/"}).ResolveReference(ref).EscapedPath()
	if path == "" {
		path = "/"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host + path, nil
}

// check is dpop's verdict and the oracle's on proof; it fails t when dpop
// accepts what the oracle refuses or the thumbprints differ.
func check(t *testing.T, proof string) (accepted bool) {
	t.Helper()
	p, err := dpop.Check(proof, params)
	if err != nil && !errors.Is(err, dpop.ErrInvalidProof) && !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("%q: error %v is neither ErrInvalidProof nor ErrUseNonce", proof, err)
	}
	jkt, oerr := oracle(proof)
	if err == nil && oerr != nil {
		t.Fatalf("dpop accepts %q; jwx (with the rules written beside it) refuses: %v", proof, oerr)
	}
	if err == nil && p.JKT != jkt {
		t.Fatalf("%q: thumbprint %q, jwx's %q", proof, p.JKT, jkt)
	}
	return err == nil
}

// goodHeader is the header of a proof by key; goodClaims its claims.
var (
	goodHeader = `{"typ":"dpop+jwt","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + b64(key.Public().(ed25519.PublicKey)) + `"}}`
	ecPoint, _ = ecKey.PublicKey.Bytes() // 4 || x || y
	ecHeader   = `{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + b64(ecPoint[1:33]) + `","y":"` + b64(ecPoint[33:]) + `"}}`
	goodClaims = `{"jti":"jti-1","htm":"GET","htu":"https://api.example.com/orders","iat":1767225600,"ath":"` + athOf(token) + `"}`
)

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func athOf(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return b64(sum[:])
}

// headerSeeds and claimSeeds are where a differential is easy to have.
var headerSeeds = []string{
	goodHeader,
	strings.Replace(goodHeader, `"typ":"dpop+jwt"`, `"typ":"application/DPOP+JWT"`, 1),
	strings.Replace(goodHeader, `"typ":"dpop+jwt"`, `"typ":"JWT"`, 1),
	strings.Replace(goodHeader, `"typ":"dpop+jwt"`, `"typ":"dpop+jwt","typ":"jwt"`, 1),
	strings.Replace(goodHeader, `"alg":"EdDSA"`, `"alg":"none"`, 1),
	strings.Replace(goodHeader, `"alg":"EdDSA"`, `"alg":"HS256"`, 1),
	strings.Replace(goodHeader, `"alg":"EdDSA"`, `"alg":"Ed25519"`, 1),
	strings.Replace(goodHeader, `"crv":"Ed25519"`, `"crv":"Ed25519","d":"`+b64(key.Seed())+`"`, 1),
	strings.Replace(goodHeader, `"crv":"Ed25519"`, `"crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"k"`, 1),
	strings.Replace(goodHeader, `"crv":"Ed25519"`, `"crv":"X25519"`, 1),
	strings.Replace(goodHeader, `"kty":"OKP"`, `"kty":"oct","k":"c2VjcmV0"`, 1),
	strings.Replace(goodHeader, `"jwk":{`, `"crit":["b64"],"b64":false,"jwk":{`, 1),
	strings.Replace(goodHeader, `"jwk":{`, `"jku":"https://evil.example/jwks","jwk":{`, 1),
	`{"typ":"dpop+jwt","alg":"EdDSA"}`,
	`{"typ":"dpop+jwt","alg":"EdDSA","jwk":null}`,
	`{"typ":"dpop+jwt","alg":"EdDSA","jwk":"x"}`,
	` { "typ" : "dpop+jwt" , "alg" : "EdDSA" , "jwk" : { "kty" : "OKP" , "crv" : "Ed25519" , "x" : "` + b64(key.Public().(ed25519.PublicKey)) + `" } } `,
	`{"t\u0079p":"dpop+jwt","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + b64(key.Public().(ed25519.PublicKey)) + `"}}`,
}

var claimSeeds = []string{
	goodClaims,
	strings.Replace(goodClaims, `"htm":"GET"`, `"htm":"get"`, 1),
	strings.Replace(goodClaims, `"htu":"https://api.example.com/orders"`, `"htu":"HTTPS://API.EXAMPLE.COM:443/x/../%6Frders?q#f"`, 1),
	strings.Replace(goodClaims, `"htu":"https://api.example.com/orders"`, `"htu":"https://api.example.com/orders/"`, 1),
	strings.Replace(goodClaims, `"htu":"https://api.example.com/orders"`, `"htu":"https://u@api.example.com/orders"`, 1),
	strings.Replace(goodClaims, `"htu":"https://api.example.com/orders"`, `"htu":"https://api.example.com:0443/orders"`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":"1767225600"`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":1767225540`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":1767225539.5`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":1767225610`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":1.7672256e9`, 1),
	strings.Replace(goodClaims, `"iat":1767225600`, `"iat":1e16`, 1),
	strings.Replace(goodClaims, `"jti":"jti-1"`, `"jti":""`, 1),
	strings.Replace(goodClaims, `"jti":"jti-1"`, `"jti":7`, 1),
	strings.Replace(goodClaims, `"jti":"jti-1"`, `"jti":"`+strings.Repeat("j", 257)+`"`, 1),
	strings.Replace(goodClaims, `"jti":"jti-1"`, `"jti":"a","jti":null`, 1),
	strings.Replace(goodClaims, `"ath":`, `"nonce":5,"ath":`, 1),
	strings.Replace(goodClaims, `"ath":"`, `"ath":"x`, 1),
	goodClaims + " x",
	`[]`, `null`, ``,
}

// FuzzCheckSigned signs fuzzed headers and claims with the key of the
// good headers (Ed25519, or P-256 when es), which is how the header and
// claim rules are reached at all.
func FuzzCheckSigned(f *testing.F) {
	for _, h := range headerSeeds {
		f.Add(h, goodClaims, false)
	}
	for _, c := range claimSeeds {
		f.Add(goodHeader, c, false)
	}
	for _, h := range ecHeaderSeeds {
		f.Add(h, goodClaims, true)
	}
	f.Fuzz(func(t *testing.T, header, claims string, es bool) {
		if es {
			check(t, signES256(header, claims))
		} else {
			check(t, sign(header, claims))
		}
	})
}

// ecHeaderSeeds are P-256 keys, good and bad.
var ecHeaderSeeds = []string{
	ecHeader,
	strings.Replace(ecHeader, `"crv":"P-256"`, `"crv":"P-384"`, 1),
	strings.Replace(ecHeader, `"x":"`, `"x":"A`, 1),
	strings.Replace(ecHeader, `"alg":"ES256"`, `"alg":"EdDSA"`, 1),
	strings.Replace(ecHeader, `"alg":"ES256"`, `"alg":"ES384"`, 1),
	strings.Replace(ecHeader, `"crv":"P-256"`, `"crv":"P-256","d":"`+b64(must(ecKey.Bytes()))+`"`, 1),
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}}`,
}

// FuzzCheck fuzzes whole proofs: besides the oracle's rule, dpop accepts
// nothing but the genuine proofs the seeds were signed as (a mutation of
// one — another encoding of the same bytes included — never verifies).
func FuzzCheck(f *testing.F) {
	good := sign(goodHeader, goodClaims)
	loose := sign(headerSeeds[1], claimSeeds[2]) // typ and htu spelled otherwise: valid
	genuine := map[string]bool{good: true, loose: true}
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(loose)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "=")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2][:20] + "\n" + parts[2][20:])
	f.Add(`{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`)
	f.Add(parts[0] + ".." + parts[2])
	f.Add("")
	f.Fuzz(func(t *testing.T, proof string) {
		if check(t, proof) && !genuine[proof] {
			t.Fatalf("accepted %q", proof)
		}
	})
}

// On the seeds, the verdicts agree both ways: every seed jwx (with the
// rules written beside it) accepts, dpop accepts too.
func TestSeedsAgree(t *testing.T) {
	n := 0
	for _, h := range headerSeeds {
		for _, c := range claimSeeds {
			proof := sign(h, c)
			_, oerr := oracle(proof)
			if got := check(t, proof); got != (oerr == nil) {
				t.Errorf("header %s claims %s: dpop accepts: %v, oracle: %v", h, c, got, oerr)
			}
			if oerr == nil {
				n++
			}
		}
	}
	for _, h := range ecHeaderSeeds {
		proof := signES256(h, goodClaims)
		_, oerr := oracle(proof)
		if got := check(t, proof); got != (oerr == nil) {
			t.Errorf("header %s: dpop accepts: %v, oracle: %v", h, got, oerr)
		}
		if oerr == nil {
			n++
		}
	}
	if n < 5 {
		t.Fatalf("only %d seeds are valid proofs", n)
	}
}
