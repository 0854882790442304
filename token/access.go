package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/verify"
)

// AccessTokenType is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const AccessTokenType = "at+jwt"

// AccessLeeway is the clock skew Verify tolerates on exp, nbf and iat:
// the same as a resource server's verify.Verifier by default.
const AccessLeeway = verify.DefaultLeeway

// Verification errors: those of package verify, which does the checking.
// Verify returns an error matching ErrExpired when the token is valid in
// every respect except that it has expired, and an error matching
// ErrInvalid (with the reason) otherwise. ErrExpired is not ErrInvalid: a
// caller can answer "expired" (and e.g. set Token-Expired: true) only when
// renewal would help.
var (
	ErrExpired = verify.ErrExpired
	ErrInvalid = verify.ErrInvalid
)

// KeySource provides the current key set. Issuer calls Keys for every
// token, so a key rotator can swap sets atomically (for example behind an
// atomic.Pointer) without rebuilding the Issuer.
type KeySource interface {
	Keys() *keys.Set
}

// StaticKeys is a KeySource whose set never changes.
type StaticKeys struct{ Set *keys.Set }

// Keys returns s.Set.
func (s StaticKeys) Keys() *keys.Set { return s.Set }

// Issuer issues and verifies access tokens: JWTs per RFC 9068 ("JWT Profile for OAuth 2.0 Access
// Tokens"). The header is
//
//	{"alg":"ES256","kid":"<RFC 7638 thumbprint>","typ":"at+jwt"}
//
// and the payload, in this order,
//
//	{"iss":"…","sub":"…","aud":["…"],"exp":…,"iat":…,"nbf":…,"jti":"…",
//	 "client_id":"…","scope":"…","roles":[…],"sid":"…"}
//
// where
//   - aud is always an array (RFC 7519 allows a lone string; an array keeps
//     one shape for consumers), and is left out only when the Issuer has no
//     audiences configured;
//   - nbf equals iat; both and exp are whole seconds;
//   - jti is 128 random bits in unpadded base64url;
//   - scope is left out when empty (RFC 9068 §2.2.3: present when the
//     grant had a scope);
//   - roles is always present, [] when the subject has none, so consumers
//     need not tell "absent" from "empty";
//   - sid is left out when empty (client_credentials has no session).
//
// An Issuer is safe for concurrent use.
type Issuer struct {
	issuer   string
	audience []string
	ttl      time.Duration
	src      KeySource

	// Precomputed payload fragments: `{"iss":<iss>,"sub":` and
	// `,"aud":[…],"exp":` (or `,"exp":` with no audience).
	prefix, audExp string

	headers  sync.Map // kid → *header
	verifier *verify.Verifier
}

// header is the precomputed start of every token a key signs.
type header struct {
	encoded string // base64url(header JSON) + "."
	sigLen  int    // base64url length of the key's signatures
}

// NewIssuer returns an Issuer that signs tokens for issuer (the iss claim)
// and audience (the aud claim), valid for ttl, with the signing key of
// src's current set. It panics if ttl ≤ 0, src is nil or issuer is empty.
func NewIssuer(issuer string, audience []string, ttl time.Duration, src KeySource) *Issuer {
	if ttl <= 0 {
		panic("token: NewIssuer: ttl must be positive")
	}
	if src == nil {
		panic("token: NewIssuer: nil KeySource")
	}
	i := &Issuer{
		issuer:   issuer,
		audience: slices.Clone(audience),
		ttl:      ttl,
		src:      src,
	}
	// Tokend checks its tokens with the code resource servers run
	// (docs/design.md, "Access tokens"), over its own keys. Without
	// configured audiences its tokens carry none, so none is checked.
	aud := verify.InsecureSkipAudienceCheck()
	if len(audience) > 0 {
		aud = verify.WithAudience(audience...)
	}
	v, err := verify.NewWithKeys(issuer, verifyKeys{src}, aud, verify.WithLeeway(AccessLeeway))
	if err != nil {
		panic("token: NewIssuer: " + err.Error())
	}
	i.verifier = v
	i.prefix = string(appendJSONString([]byte(`{"iss":`), issuer)) + `,"sub":`
	if len(audience) > 0 {
		b := []byte(`,"aud":`)
		b = appendJSONStrings(b, audience)
		i.audExp = string(b) + `,"exp":`
	} else {
		i.audExp = `,"exp":`
	}
	return i
}

// TTL returns the lifetime of the tokens the Issuer makes (for expires_in).
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Claims are the per-token inputs to Issue.
type Claims struct {
	Subject   string   // sub: the user id, or the client id for client_credentials (required)
	ClientID  string   // client_id: the client the token was issued to (required)
	Scope     string   // scope: space-separated granted scopes
	SessionID string   // sid: the session (token family); empty for client_credentials
	Roles     []string // roles
}

// Issue signs an access token for c, issued at now, with the signing key of
// the current key set.
func (i *Issuer) Issue(c Claims, now time.Time) (string, error) {
	if c.Subject == "" || c.ClientID == "" {
		return "", errors.New("token: access token needs a subject and a client id")
	}
	set := i.src.Keys()
	if set == nil || set.Current() == nil {
		return "", errors.New("token: no signing key")
	}
	k := set.Current()
	h := i.header(k)

	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	var scratch [1024]byte
	payload := i.appendPayload(scratch[:0], &c, now, &jti)

	enc := base64.RawURLEncoding
	var b strings.Builder
	b.Grow(len(h.encoded) + enc.EncodedLen(len(payload)) + 1 + h.sigLen)
	b.WriteString(h.encoded)
	var encScratch [1400]byte
	b.Write(enc.AppendEncode(encScratch[:0], payload))
	// The Builder only appends, so this string stays valid (and unchanged)
	// as the signature is written after it; no copy is made.
	signingString := b.String()
	sig, err := k.Method.Sign(signingString, k.Signer)
	if err != nil {
		return "", fmt.Errorf("token: sign access token with key %s: %w", k.ID, err)
	}
	b.WriteByte('.')
	b.Write(enc.AppendEncode(encScratch[:0], sig))
	return b.String(), nil
}

// header returns the cached header of k, computing it on first use.
func (i *Issuer) header(k *keys.Key) *header {
	if h, ok := i.headers.Load(k.ID); ok {
		return h.(*header)
	}
	js, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.Alg, k.ID, AccessTokenType})
	h := &header{encoded: base64.RawURLEncoding.EncodeToString(js) + "."}
	switch p := k.Public.(type) {
	case *ecdsa.PublicKey:
		h.sigLen = 2 * ((p.Curve.Params().BitSize + 7) / 8)
	case ed25519.PublicKey:
		h.sigLen = ed25519.SignatureSize
	case *rsa.PublicKey:
		h.sigLen = p.Size()
	}
	h.sigLen = base64.RawURLEncoding.EncodedLen(h.sigLen)
	v, _ := i.headers.LoadOrStore(k.ID, h)
	return v.(*header)
}

func (i *Issuer) appendPayload(b []byte, c *Claims, now time.Time, jti *[16]byte) []byte {
	iat := now.Unix()
	b = append(b, i.prefix...)
	b = appendJSONString(b, c.Subject)
	b = append(b, i.audExp...)
	b = strconv.AppendInt(b, now.Add(i.ttl).Unix(), 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, iat, 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, iat, 10)
	b = append(b, `,"jti":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, jti[:])
	b = append(b, `","client_id":`...)
	b = appendJSONString(b, c.ClientID)
	if c.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, c.Scope)
	}
	b = append(b, `,"roles":`...)
	b = appendJSONStrings(b, c.Roles)
	if c.SessionID != "" {
		b = append(b, `,"sid":`...)
		b = appendJSONString(b, c.SessionID)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Printable ASCII without
// quotes or backslashes (every id, scope and role tokend makes) is copied
// as is; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for j := 0; j < len(s); j++ {
		if c := s[j]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			js, _ := json.Marshal(s) // a string always marshals
			return append(b, js...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for j, s := range ss {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// Verify checks tok as a resource server would — with package verify's
// Verifier, over the Issuer's current key set — and returns its claims,
// verify.Claims as a resource server gets them. It requires
//   - a signature by a key in the current set named by the header kid, with
//     that key's algorithm (so "none", HMAC and algorithm substitution are
//     refused);
//   - typ "at+jwt" (or "application/at+jwt", RFC 9068 §4) and no "crit";
//   - iss equal to the Issuer's, and, if the Issuer has audiences, an aud
//     containing one of them;
//   - sub, client_id, jti, iat and exp present, each of its JSON type;
//   - iat and nbf not after now, and now before exp, each with AccessLeeway.
//
// Expiry is checked last: an error matching ErrExpired means the token is
// otherwise valid. Every other failure matches ErrInvalid.
func (i *Issuer) Verify(tok string, now time.Time) (*verify.Claims, error) {
	return i.verifier.VerifyAt(context.Background(), tok, now)
}

// verifyKeys is the Issuer's KeySource as a verify.KeySet: each lookup
// sees the current set, so a rotation applies at once.
type verifyKeys struct{ src KeySource }

func (k verifyKeys) LookupKey(kid string) (verify.Key, bool) {
	set := k.src.Keys()
	if set == nil {
		return verify.Key{}, false
	}
	key, ok := set.Lookup(kid)
	if !ok {
		return verify.Key{}, false
	}
	return verify.Key{Algorithm: key.Alg, Public: key.Public}, true
}
