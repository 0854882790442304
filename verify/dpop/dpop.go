// Package dpop parses and checks DPoP proofs (RFC 9449, OAuth 2.0
// Demonstrating Proof of Possession), and makes them.
//
// It is the one checker of proofs in tokend: tokend's token endpoint calls
// Check with the URL built from its issuer, and the verify package's
// middleware calls it for each request that carries a DPoP-bound access
// token. It depends on the standard library and golang-jwt only.
//
// Check accepts a proof (the value of the DPoP request header) only if
//   - it is at most MaxProofBytes long, and a compact JWS: three base64url
//     segments, no padding, nothing else;
//   - its header and claims are JSON objects (with no whitespace around
//     them);
//   - its header has typ "dpop+jwt" (RFC 9449 §4.2), no "crit", an alg on
//     the allow-list (ES256 and EdDSA by default, RS256 if asked; never
//     "none" or HMAC) and a "jwk" that is a public key of that alg's key
//     type — a P-256 point on the curve, an Ed25519 key, or an RSA key of
//     2048 to 4096 bits — written canonically and without any private
//     member ("d", "p", "q", "dp", "dq", "qi", "oth", "k");
//   - the signature verifies with that key;
//   - its claims have jti (1 to MaxJTIBytes bytes), htm equal to the
//     request's method, htu equal to the request's URL once both are
//     normalised (see below), and iat within [now − MaxAge, now + Skew];
//   - ath is base64url(SHA-256(access token)) when an access token is
//     presented with it (Params.AccessToken); without one, ath is not
//     looked at (RFC 9449 §4.3 checks it only with an access token);
//   - the nonce callback, if any, accepts its nonce claim.
//
// The htu comparison (RFC 9449 §4.3) ignores the query and fragment and
// applies RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based
// normalisation to both URLs: scheme and host in lower case, the scheme's
// default port and empty port dropped, an empty path as "/", percent-
// encodings in upper case and decoded where they encode an unreserved
// character, and dot segments removed. Only http and https URLs without
// user information are accepted.
//
// Every refusal is an *Error whose Err is ErrInvalidProof or ErrUseNonce
// (errors.Is works with both) and whose Reason is a fixed text fit for an
// error_description. Check never panics, whatever the input.
//
// Check is stateless: replay detection is the caller's, keyed by
// Proof.ID until Proof.Expiry — with a ReplayCache (NewMemoryReplayCache
// in one process; any shared store behind the same interface across
// replicas), or, in tokend, in the same atomic step as the refresh
// token's rotation.
package dpop

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"time"

	"github.com/tokend/tokend/verify/internal/jose"
)

// Errors that every refusal matches with errors.Is: exactly one of them.
var (
	// ErrInvalidProof: the proof is missing, malformed, forged, stale, or
	// not for this request. Answer invalid_dpop_proof (RFC 9449 §5, §7.1).
	ErrInvalidProof = errors.New("dpop: invalid DPoP proof")
	// ErrUseNonce: the proof lacks the server's current nonce, or carries
	// a stale or forged one. Answer use_dpop_nonce with a DPoP-Nonce
	// header (RFC 9449 §8, §9).
	ErrUseNonce = errors.New("dpop: the DPoP proof needs the server's nonce")
)

// Algorithms of proofs.
const (
	ES256 = jose.ES256
	EdDSA = jose.EdDSA
	RS256 = jose.RS256
)

// Limits and defaults (docs/design.md, "DPoP proofs").
const (
	// MaxProofBytes bounds a proof: an ES256 proof with a nonce and ath
	// is about 700 bytes, an RS256 one with a 4096-bit key about 2,000.
	MaxProofBytes = 4096
	// MaxJTIBytes bounds jti (RFC 9449 §4.2 asks for 96 random bits:
	// 16 characters of base64url, 36 of a UUID).
	MaxJTIBytes = 256
	// DefaultMaxAge is how old a proof's iat may be.
	DefaultMaxAge = 60 * time.Second
	// DefaultSkew is how far ahead of the server's clock iat may be.
	DefaultSkew = 10 * time.Second
	// maxRSABits bounds the RSA keys of proofs: anyone can send one, and
	// verification time grows with the modulus.
	maxRSABits = 4096
)

// DefaultAlgorithms is the allow-list when Params.Algorithms is empty.
var DefaultAlgorithms = []string{ES256, EdDSA}

// Params says what a proof must match.
type Params struct {
	// Method is the request's method (htm), compared exactly.
	Method string
	// URL is the request's URL as the client addressed it (htu): for
	// tokend's token endpoint its issuer + "/oauth/token", for a resource
	// server its public URL + the request's path — never built from
	// request headers a client controls.
	URL string
	// AccessToken, if not empty, is the access token presented with the
	// proof: ath must be base64url(SHA-256(AccessToken)). Empty: ath is
	// not looked at.
	AccessToken string
	// Now is the time to check iat against [time.Now() if zero].
	Now time.Time
	// MaxAge is how old iat may be [DefaultMaxAge if ≤ 0].
	MaxAge time.Duration
	// Skew is how far in the future iat may be [DefaultSkew if ≤ 0].
	Skew time.Duration
	// Algorithms is the alg allow-list [DefaultAlgorithms if empty]. Only
	// ES256, EdDSA and RS256 can ever be accepted; other names are
	// ignored.
	Algorithms []string
	// Nonce, if not nil, checks the proof's nonce claim ("" when it has
	// none); any error it returns makes Check refuse with ErrUseNonce.
	// Nonces.Check is one.
	Nonce func(nonce string, now time.Time) error
	// JKT, if not empty, is the thumbprint the proof's key must have (the
	// cnf.jkt of a bound token, or the key a session is bound to).
	JKT string
}

// Proof is a proof that Check accepted.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// base64url (43 characters): what a bound token's cnf.jkt holds.
	JKT string
	// ID is the proof's replay id, base64url(SHA-256(JKT, htm, htu, jti))
	// (43 characters): the same proof sent twice has the same ID, and
	// proofs for different keys or requests never share one.
	ID string
	// IssuedAt is iat.
	IssuedAt time.Time
	// Expiry is until when a replay cache must remember ID: iat + MaxAge
	// + Skew, past which Check refuses the proof anyway.
	Expiry time.Time
	// Alg is the proof's signature algorithm.
	Alg string
	// Key is the proof's public key: *ecdsa.PublicKey, ed25519.PublicKey
	// or *rsa.PublicKey.
	Key crypto.PublicKey
	// JTI, Method and Nonce are the jti, htm and nonce claims; URL is htu
	// normalised.
	JTI, Method, URL, Nonce string
}

// Error is a refusal of Check, of Nonces.Check, or of a replay check.
type Error struct {
	// Err is ErrInvalidProof or ErrUseNonce.
	Err error
	// Reason says what is wrong, in a fixed text without quotes or
	// backslashes, fit for an RFC 6750 §3 error_description.
	Reason string
	// cause is an underlying error (a nonce callback's), or nil.
	cause error
}

func (e *Error) Error() string {
	s := e.Err.Error() + ": " + e.Reason
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap gives Err and the underlying cause.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.cause}
}

func invalid(reason string) error { return &Error{Err: ErrInvalidProof, Reason: reason} }

// Check parses proof, the value of a request's one DPoP header, and checks
// it against p (see the package documentation).
func Check(proof string, p Params) (*Proof, error) {
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxAge, skew := p.MaxAge, p.Skew
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if skew <= 0 {
		skew = DefaultSkew
	}
	algs := p.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}

	// Shape: a compact JWS of base64url segments.
	if proof == "" {
		return nil, invalid("the DPoP proof is missing")
	}
	if len(proof) > MaxProofBytes {
		return nil, invalid("the DPoP proof is too large")
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(proof); i++ {
		switch c := proof[i]; {
		case c == '.':
			if dot1 < 0 {
				dot1 = i
			} else if dot2 < 0 {
				dot2 = i
			} else {
				return nil, invalid("the DPoP proof is not a compact JWS")
			}
		case !isBase64URL(c):
			return nil, invalid("the DPoP proof is not a compact JWS")
		}
	}
	if dot1 <= 0 || dot2 < 0 || dot2 == dot1+1 || dot2 == len(proof)-1 {
		return nil, invalid("the DPoP proof is not a compact JWS")
	}

	// Header.
	raw, err := jose.Segment(nil, proof[:dot1])
	if err != nil {
		return nil, invalid("the DPoP proof's header is not base64url")
	}
	h, err := decodeHeader(raw)
	if err != nil {
		return nil, err
	}
	if !jose.IsType(h.typ, "dpop+jwt") {
		return nil, invalid("the DPoP proof's typ is not dpop+jwt")
	}
	if jose.AlgIndex(h.alg) < 0 || !slices.Contains(algs, h.alg) {
		return nil, invalid("the DPoP proof's algorithm is not accepted")
	}
	if h.crit {
		return nil, invalid("the DPoP proof has a critical header parameter")
	}
	if h.jwk == nil {
		return nil, invalid("the DPoP proof has no jwk")
	}
	key, err := parseKey(h.jwk, h.alg)
	if err != nil {
		return nil, err
	}

	// Claims, decoded into the header's buffer: nothing read from the
	// header points into it any more.
	raw, err = jose.Segment(raw[:0], proof[dot1+1:dot2])
	if err != nil {
		return nil, invalid("the DPoP proof's claims are not base64url")
	}
	c, err := decodeClaims(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case c.jti == "":
		return nil, invalid("the DPoP proof has no jti")
	case len(c.jti) > MaxJTIBytes:
		return nil, invalid("the DPoP proof's jti is too long")
	case c.htm == "":
		return nil, invalid("the DPoP proof has no htm")
	case c.htu == "":
		return nil, invalid("the DPoP proof has no htu")
	case !c.iat.Set:
		return nil, invalid("the DPoP proof has no iat")
	case c.htm != p.Method:
		return nil, invalid("the DPoP proof is for another HTTP method (htm)")
	}
	want, err := normalizeURL(p.URL)
	if err != nil {
		return nil, invalid("the server's own URL is not an http(s) URL")
	}
	if htu, err := normalizeURL(c.htu); err != nil || htu != want {
		return nil, invalid("the DPoP proof is for another URL (htu)")
	}
	if c.iat.T.Before(now.Add(-maxAge)) {
		return nil, invalid("the DPoP proof is too old (iat)")
	}
	if c.iat.T.After(now.Add(skew)) {
		return nil, invalid("the DPoP proof is issued in the future (iat)")
	}
	if p.AccessToken != "" {
		if c.ath == "" {
			return nil, invalid("the DPoP proof has no access token hash (ath)")
		}
		if c.ath != accessTokenHash(p.AccessToken) {
			return nil, invalid("the DPoP proof is for another access token (ath)")
		}
	}

	// Signature.
	var sbuf [512]byte
	sig, err := jose.Segment(sbuf[:0], proof[dot2+1:])
	if err != nil {
		return nil, invalid("the DPoP proof's signature is not base64url")
	}
	if err := key.Verify(h.alg, proof[:dot2], sig); err != nil {
		return nil, invalid("the DPoP proof's signature is invalid")
	}

	jkt, err := Thumbprint(key.Pub)
	if err != nil { // parseKey made the key; Thumbprint knows each kind
		return nil, invalid("the DPoP proof's jwk is not supported")
	}
	if p.JKT != "" && p.JKT != jkt {
		return nil, invalid("the DPoP proof is signed by another key than the one the token is bound to")
	}
	if p.Nonce != nil {
		if err := p.Nonce(c.nonce, now); err != nil {
			var de *Error
			if errors.As(err, &de) && de.Err == ErrUseNonce {
				return nil, de
			}
			return nil, &Error{Err: ErrUseNonce, Reason: "the DPoP proof lacks a valid nonce", cause: err}
		}
	}
	return &Proof{
		JKT: jkt, ID: replayID(jkt, c.htm, want, c.jti), IssuedAt: c.iat.T, Expiry: c.iat.T.Add(maxAge + skew),
		Alg: h.alg, Key: key.Pub, JTI: c.jti, Method: c.htm, URL: want, Nonce: c.nonce,
	}, nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// accessTokenHash is ath for tok: base64url(SHA-256(tok)) (RFC 9449 §4.2).
func accessTokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// replayID is Proof.ID. The fields are separated by a newline, which
// none but the last (jti) can hold: jkt is base64url, htm was compared
// with the request's method, and htu is normalised (no control
// characters).
func replayID(jkt, htm, htu, jti string) string {
	h := sha256.New()
	for i, s := range [...]string{jkt, htm, htu, jti} {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write([]byte(s))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// newObjectReader reads a JSON object written without whitespace around
// it: a header or claims set that some JOSE libraries (jwx) would refuse
// is refused here too, and no client writes one.
func newObjectReader(raw []byte) (*jose.ObjectReader, error) {
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, errors.New("not a JSON object")
	}
	return jose.NewObjectReader(raw)
}

// header is a proof's JOSE header.
type header struct {
	typ, alg string
	jwk      *jose.ObjectReader // nil if absent
	crit     bool
}

func decodeHeader(raw []byte) (*header, error) {
	r, err := newObjectReader(raw)
	if err != nil {
		return nil, invalid("the DPoP proof's header is not a JSON object")
	}
	h := &header{}
	for r.Next() {
		switch string(r.Name) {
		case "typ":
			err = jose.String(r.Value, &h.typ)
		case "alg":
			err = jose.String(r.Value, &h.alg)
		case "jwk":
			if jose.IsNull(r.Value) {
				h.jwk = nil
			} else {
				h.jwk, err = r.Object()
			}
		case "crit":
			h.crit = true
		}
		if err != nil {
			return nil, invalid("the DPoP proof's header has a member of the wrong type")
		}
	}
	if r.Err != nil {
		return nil, invalid("the DPoP proof's header is not a JSON object")
	}
	return h, nil
}

// claims are a proof's claims.
type claims struct {
	jti, htm, htu, ath, nonce string
	iat                       jose.NumericDate
}

func decodeClaims(raw []byte) (*claims, error) {
	r, err := newObjectReader(raw)
	if err != nil {
		return nil, invalid("the DPoP proof's claims are not a JSON object")
	}
	c := &claims{}
	for r.Next() {
		switch string(r.Name) {
		case "jti":
			err = jose.String(r.Value, &c.jti)
		case "htm":
			err = jose.String(r.Value, &c.htm)
		case "htu":
			err = jose.String(r.Value, &c.htu)
		case "ath":
			err = jose.String(r.Value, &c.ath)
		case "nonce":
			err = jose.String(r.Value, &c.nonce)
		case "iat":
			err = c.iat.Decode(r.Value)
		}
		if err != nil {
			return nil, invalid("the DPoP proof's claims have a member of the wrong type")
		}
	}
	if r.Err != nil {
		return nil, invalid("the DPoP proof's claims are not a JSON object")
	}
	return c, nil
}
