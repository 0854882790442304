package token

import (
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

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/keys"
)

// AccessTokenType is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const AccessTokenType = "at+jwt"

// AccessLeeway is the clock skew Verify tolerates on exp, nbf and iat.
const AccessLeeway = 30 * time.Second

// Verification errors. Verify returns an error wrapping ErrExpired when the
// token is valid in every respect except that it has expired, and an error
// wrapping ErrInvalid (and the underlying reason) otherwise. ErrExpired is
// not ErrInvalid: a caller can answer "expired" (and e.g. set
// Token-Expired: true) only when renewal would help.
var (
	ErrExpired = errors.New("token: access token expired")
	ErrInvalid = errors.New("token: invalid access token")
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

	headers sync.Map // kid → *header
	parser  *jwt.Parser
}

// header is the precomputed start of every token a key signs.
type header struct {
	encoded string // base64url(header JSON) + "."
	sigLen  int    // base64url length of the key's signatures
}

// NewIssuer returns an Issuer that signs tokens for issuer (the iss claim)
// and audience (the aud claim), valid for ttl, with the signing key of
// src's current set. It panics if ttl ≤ 0 or src is nil.
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
		parser: jwt.NewParser(
			// Every key's own algorithm; the key function below then
			// requires the header alg to be exactly the named key's.
			jwt.WithValidMethods([]string{keys.ES256, keys.EdDSA, keys.RS256}),
			jwt.WithStrictDecoding(),
			// Claims are checked by Verify against its now argument.
			jwt.WithoutClaimsValidation(),
		),
	}
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
	if set == nil || set.Signing() == nil {
		return "", errors.New("token: no signing key")
	}
	k := set.Signing()
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

// AccessClaims are the claims of a verified access token.
type AccessClaims struct {
	Issuer    string    // iss
	Subject   string    // sub
	ClientID  string    // client_id
	Scope     string    // scope
	SessionID string    // sid; empty for client_credentials
	ID        string    // jti
	Audience  []string  // aud
	Roles     []string  // roles
	IssuedAt  time.Time // iat (UTC)
	NotBefore time.Time // nbf (UTC); zero if absent
	ExpiresAt time.Time // exp (UTC)
	KeyID     string    // kid of the key that signed it
}

// accessJWTClaims is the payload as golang-jwt decodes it.
type accessJWTClaims struct {
	jwt.RegisteredClaims
	ClientID  string   `json:"client_id"`
	Scope     string   `json:"scope"`
	Roles     []string `json:"roles"`
	SessionID string   `json:"sid"`
}

// Verify checks tok as a resource server would and returns its claims. It
// requires
//   - a signature by a key in the current set named by the header kid, with
//     that key's algorithm (so "none", HMAC and algorithm substitution are
//     refused);
//   - typ "at+jwt" (or "application/at+jwt", RFC 9068 §4) and no "crit";
//   - iss equal to the Issuer's, and, if the Issuer has audiences, an aud
//     containing one of them;
//   - sub, client_id, jti, iat and exp present;
//   - iat and nbf not after now, and now before exp, each with AccessLeeway.
//
// Expiry is checked last: an error wrapping ErrExpired means the token is
// otherwise valid. Every other failure wraps ErrInvalid.
func (i *Issuer) Verify(tok string, now time.Time) (AccessClaims, error) {
	set := i.src.Keys()
	if set == nil {
		return AccessClaims{}, fmt.Errorf("%w: no verification keys", ErrInvalid)
	}
	var cl accessJWTClaims
	var signedBy string
	_, err := i.parser.ParseWithClaims(tok, &cl, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !isAccessTokenType(typ) {
			return nil, fmt.Errorf("typ %q is not %q", t.Header["typ"], AccessTokenType)
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("unsupported crit header")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		k, ok := set.Lookup(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		if alg := t.Method.Alg(); alg != k.Alg {
			return nil, fmt.Errorf("alg %s does not match key %s (%s)", alg, kid, k.Alg)
		}
		signedBy = kid
		return k.Public, nil
	})
	if err != nil {
		return AccessClaims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	invalid := func(format string, args ...any) (AccessClaims, error) {
		return AccessClaims{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if cl.Issuer != i.issuer {
		return invalid("iss %q is not %q", cl.Issuer, i.issuer)
	}
	if len(i.audience) > 0 && !slices.ContainsFunc(cl.Audience, func(a string) bool { return slices.Contains(i.audience, a) }) {
		return invalid("aud %q does not include any of %q", []string(cl.Audience), i.audience)
	}
	switch {
	case cl.Subject == "":
		return invalid("no sub")
	case cl.ClientID == "":
		return invalid("no client_id")
	case cl.ID == "":
		return invalid("no jti")
	case cl.IssuedAt == nil:
		return invalid("no iat")
	case cl.ExpiresAt == nil:
		return invalid("no exp")
	}
	late := now.Add(AccessLeeway)
	if late.Before(cl.IssuedAt.Time) {
		return invalid("iat %s is in the future", cl.IssuedAt.UTC().Format(time.RFC3339))
	}
	if cl.NotBefore != nil && late.Before(cl.NotBefore.Time) {
		return invalid("not valid before %s", cl.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cl.ExpiresAt.Add(AccessLeeway)) {
		return AccessClaims{}, fmt.Errorf("%w at %s", ErrExpired, cl.ExpiresAt.UTC().Format(time.RFC3339))
	}

	ac := AccessClaims{
		Issuer:    cl.Issuer,
		Subject:   cl.Subject,
		ClientID:  cl.ClientID,
		Scope:     cl.Scope,
		SessionID: cl.SessionID,
		ID:        cl.ID,
		Audience:  cl.Audience,
		Roles:     cl.Roles,
		IssuedAt:  cl.IssuedAt.UTC(),
		ExpiresAt: cl.ExpiresAt.UTC(),
		KeyID:     signedBy,
	}
	if cl.NotBefore != nil {
		ac.NotBefore = cl.NotBefore.UTC()
	}
	return ac, nil
}

// isAccessTokenType reports whether typ names the at+jwt media type; the
// "application/" prefix may be omitted (RFC 7515 §4.1.9) and media types
// compare case-insensitively.
func isAccessTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == AccessTokenType || typ == "application/"+AccessTokenType
}
