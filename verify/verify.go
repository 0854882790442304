// Package verify checks tokend access tokens in a resource server, locally,
// without calling tokend per request (SPEC §8).
//
// A Verifier learns tokend's jwks_uri from its RFC 8414 metadata, fetches
// the JSON Web Key Set and caches it for as long as its Cache-Control
// max-age says. A token signed by a key it does not know (tokend rotated
// keys, or restarted with a new development key) makes it fetch the set
// again at once, shared by every concurrent caller and at most once per
// WithRefetchInterval, so forged kids cannot make it hammer tokend. If
// tokend cannot be reached, the keys it has keep working.
//
// Verify accepts an access token (RFC 9068) only if
//   - it is a compact JWS with header typ "at+jwt" and no "crit";
//   - its alg is on the allow-list (ES256, EdDSA and RS256 by default;
//     "none" and HMAC algorithms can never be allowed) and matches the
//     published key named by its kid (the key's alg, or its kty and crv);
//   - the signature verifies with that key;
//   - iss is the issuer; aud contains one of WithAudience's values, when
//     given; sub, client_id, jti, iat and exp are present;
//   - iat and nbf are not in the future and exp is not past, each with a
//     leeway (WithLeeway, 30 s by default).
//
// With WithRevocations the Verifier also follows tokend's revocation feed
// (GET /events) and refuses, with an error matching ErrRevoked (and
// ErrInvalid), the tokens of sessions that ended since they were issued.
//
// An expired token that is otherwise valid gives an error matching
// ErrExpired — the one case where getting a new access token helps — and
// every other failure an error matching ErrInvalid (or ErrUnavailable when
// the keys could not be fetched).
//
// Middleware puts the Claims of a valid token in the request context
// (ClaimsFrom) and answers the others as RFC 6750 §3 says; RequireScope
// and RequireRole answer 403 insufficient_scope.
//
// The package depends on golang-jwt for the signature algorithms and on
// nothing of tokend's server.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors that Verify's errors match with errors.Is.
var (
	// ErrInvalid: the token is malformed, forged, or not for this resource
	// server. Answer 401 invalid_token.
	ErrInvalid = errors.New("verify: invalid access token")
	// ErrExpired: the token is valid in every respect except that it has
	// expired. Answer 401 invalid_token with Token-Expired: true; the
	// client should refresh.
	ErrExpired = errors.New("verify: access token expired")
	// ErrUnavailable: the signing keys could not be fetched. Answer 503.
	ErrUnavailable = errors.New("verify: signing keys unavailable")
)

// Defaults of the options.
const (
	DefaultLeeway          = 30 * time.Second
	DefaultRefetchInterval = 10 * time.Second
	// DefaultCacheTTL is how long a JWKS is cached when its response has
	// no Cache-Control max-age.
	DefaultCacheTTL = 5 * time.Minute
	// MinCacheTTL and MaxCacheTTL bound the max-age a Verifier honours.
	MinCacheTTL = time.Second
	MaxCacheTTL = 24 * time.Hour

	maxTokenBytes = 16 << 10
	maxHeaders    = 64
	maxBodyBytes  = 1 << 20
	fetchTimeout  = 10 * time.Second
)

// Algorithms a Verifier can check. The default allow-list is all of them.
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
)

// Option configures a Verifier.
type Option func(*options)

type options struct {
	audience []string
	algs     []string
	leeway   time.Duration
	refetch  time.Duration
	client   *http.Client
	jwksURL  string
	now      func() time.Time
	log      *slog.Logger
	err      error

	revocations *Revocations
}

// WithAudience requires the token's aud to contain at least one of aud.
// Resource servers should set it (RFC 9068 §4); without it aud is not
// checked.
func WithAudience(aud ...string) Option {
	return func(o *options) { o.audience = append(o.audience, aud...) }
}

// WithAlgorithms sets the alg allow-list (default ES256, EdDSA and RS256).
// New fails for an algorithm this package cannot verify, which includes
// "none" and every HMAC algorithm: tokend's keys are asymmetric, and a
// public key must never serve as an HMAC secret.
func WithAlgorithms(algs ...string) Option {
	return func(o *options) {
		for _, a := range algs {
			if _, ok := methods[a]; !ok {
				o.err = fmt.Errorf("verify: algorithm %q is not supported (use %s, %s or %s)", a, ES256, EdDSA, RS256)
				return
			}
		}
		o.algs = slices.Clone(algs)
	}
}

// WithLeeway sets the clock skew tolerated on exp, nbf and iat (default
// DefaultLeeway).
func WithLeeway(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = errors.New("verify: negative leeway")
			return
		}
		o.leeway = d
	}
}

// WithRefetchInterval sets the shortest time between two fetches of the
// JWKS caused by unknown kids (default DefaultRefetchInterval). Fetches
// because the cached set expired are not limited by it.
func WithRefetchInterval(d time.Duration) Option {
	return func(o *options) { o.refetch = d }
}

// WithHTTPClient sets the client for the metadata and JWKS requests
// (default: an http.Client with a 10 s timeout).
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.client = c }
}

// WithJWKSURL fetches the keys from u instead of the jwks_uri of the
// issuer's metadata, and skips the metadata request. Use it when the
// resource server reaches tokend at another address than its public issuer
// URL (e.g. http://tokend:8080 inside a cluster); iss is still checked
// against the issuer.
func WithJWKSURL(u string) Option {
	return func(o *options) { o.jwksURL = u }
}

// WithClock sets the clock (default time.Now), for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLogger logs failed JWKS fetches (default: none).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// Verifier verifies access tokens of one issuer. It is safe for concurrent
// use; make one per issuer and share it.
type Verifier struct {
	issuer   string
	jwksURL  string
	audience []string
	algs     [len(supportedAlgs)]bool // indexed like supportedAlgs
	leeway   time.Duration
	refetch  time.Duration
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger

	keys  atomic.Pointer[keyCache]
	group singleflight.Group

	// headers caches parsed, accepted JOSE headers by their encoded form:
	// every token a key signs has the same header, so a warm verifier
	// decodes only the payload. Only headers of tokens whose signature
	// verified are added, at most maxHeaders of them.
	headers    sync.Map // string → *header
	numHeaders atomic.Int32

	rev       *revocations // the revocation feed's state; nil without WithRevocations
	closeOnce sync.Once

	mu          sync.Mutex // guards the fields below
	lastRefetch time.Time  // last fetch caused by an unknown kid
	lastFailure time.Time  // last failed fetch
}

// New returns a Verifier for tokens issued by issuerURL (tokend's
// JWT_ISSUER, exactly). Unless WithJWKSURL is given it reads jwks_uri from
// issuerURL + "/.well-known/oauth-authorization-server" (RFC 8414), whose
// issuer must be issuerURL. Keys are fetched on first use.
func New(ctx context.Context, issuerURL string, opts ...Option) (*Verifier, error) {
	o := options{leeway: DefaultLeeway, refetch: DefaultRefetchInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	if issuerURL == "" {
		return nil, errors.New("verify: empty issuer URL")
	}
	if o.client == nil {
		o.client = &http.Client{Timeout: fetchTimeout}
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.algs == nil {
		o.algs = supportedAlgs[:]
	}
	v := &Verifier{
		issuer: issuerURL, jwksURL: o.jwksURL, audience: slices.Clone(o.audience),
		leeway: o.leeway, refetch: o.refetch, client: o.client, now: o.now, log: o.log,
	}
	for _, a := range o.algs {
		v.algs[algIndex(a)] = true
	}
	var feedURL string
	if v.jwksURL == "" {
		u, events, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		v.jwksURL, feedURL = u, events
	}
	if err := checkURL(v.jwksURL); err != nil {
		return nil, fmt.Errorf("verify: jwks_uri: %w", err)
	}
	if r := o.revocations; r != nil {
		if r.URL != "" {
			feedURL = r.URL
		} else if feedURL == "" {
			var err error
			if feedURL, err = eventsURL(v.jwksURL); err != nil {
				return nil, fmt.Errorf("verify: revocation feed URL: %w", err)
			}
		}
		if err := checkURL(feedURL); err != nil {
			return nil, fmt.Errorf("verify: revocation feed URL: %w", err)
		}
		v.rev = newRevocations(*r, feedURL, v.log, v.now, v.leeway)
		v.rev.start()
	}
	return v, nil
}

// discover reads jwks_uri and revocation_events_endpoint (tokend's feed,
// may be absent) from the issuer's metadata.
func (v *Verifier) discover(ctx context.Context) (jwks, events string, err error) {
	mdURL := strings.TrimSuffix(v.issuer, "/") + "/.well-known/oauth-authorization-server"
	body, _, err := v.get(ctx, mdURL)
	if err != nil {
		return "", "", fmt.Errorf("verify: read issuer metadata: %w", err)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
		Events  string `json:"revocation_events_endpoint"`
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return "", "", fmt.Errorf("verify: issuer metadata %s: %w", mdURL, err)
	}
	if md.Issuer != v.issuer {
		return "", "", fmt.Errorf("verify: issuer metadata %s names issuer %q, not %q", mdURL, md.Issuer, v.issuer)
	}
	if md.JWKSURI == "" {
		return "", "", fmt.Errorf("verify: issuer metadata %s has no jwks_uri", mdURL)
	}
	return md.JWKSURI, md.Events, nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

// get fetches u and returns the body of a 200 answer.
func (v *Verifier) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := readAll(resp, maxBodyBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return body, resp.Header, nil
}

// Claims are the claims of a verified access token.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub: the user id, or the client id for client_credentials
	Audience  []string  // aud
	ClientID  string    // client_id
	Scopes    []string  // scope, split at spaces
	Roles     []string  // roles
	SessionID string    // sid; empty for client_credentials
	ID        string    // jti
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf; zero if absent
	ExpiresAt time.Time // exp

	payload []byte // the decoded JWT payload, for Decode
}

// HasScope reports whether the token was granted scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// HasRole reports whether the token's subject has role r.
func (c *Claims) HasRole(r string) bool { return slices.Contains(c.Roles, r) }

// Decode unmarshals the token's whole JSON payload into v, for claims
// Claims does not have.
func (c *Claims) Decode(v any) error { return json.Unmarshal(c.payload, v) }

// tokenError is a Verify failure. desc is a fixed, safe text for the
// error_description of WWW-Authenticate; detail may quote the token.
type tokenError struct {
	kind   error // ErrInvalid, ErrExpired or ErrUnavailable
	desc   string
	detail string
	cause  error
}

func (e *tokenError) Error() string {
	s := e.kind.Error() + ": " + e.desc
	if e.detail != "" {
		s += " (" + e.detail + ")"
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Is matches the error's kind; a revoked token is also an invalid one.
func (e *tokenError) Is(target error) bool {
	return target == e.kind || (e.kind == ErrRevoked && target == ErrInvalid)
}
func (e *tokenError) Unwrap() error { return e.cause }

func invalid(desc string) error { return &tokenError{kind: ErrInvalid, desc: desc} }

func invalidf(desc, format string, args ...any) error {
	return &tokenError{kind: ErrInvalid, desc: desc, detail: fmt.Sprintf(format, args...)}
}

// header is the JOSE header of a token.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// payload is the JWT claims set as it is decoded.
type payload struct {
	Iss      string      `json:"iss"`
	Sub      string      `json:"sub"`
	Aud      audience    `json:"aud"`
	Exp      numericDate `json:"exp"`
	Iat      numericDate `json:"iat"`
	Nbf      numericDate `json:"nbf"`
	Jti      string      `json:"jti"`
	ClientID string      `json:"client_id"`
	Scope    string      `json:"scope"`
	Roles    []string    `json:"roles"`
	Sid      string      `json:"sid"`
}

// verified holds a token's Claims and what they were decoded from in one
// allocation.
type verified struct {
	Claims
	p payload
}

// Verify checks tok (the compact JWS of an access token, without "Bearer")
// and returns its claims. ctx bounds a key fetch if one is needed.
func (v *Verifier) Verify(ctx context.Context, tok string) (*Claims, error) {
	if len(tok) > maxTokenBytes {
		return nil, invalid("the access token is too large")
	}
	dot1 := strings.IndexByte(tok, '.')
	dot2 := strings.LastIndexByte(tok, '.')
	if dot1 <= 0 || dot2 == dot1 || dot2 == len(tok)-1 || strings.IndexByte(tok[dot1+1:dot2], '.') >= 0 {
		return nil, invalid("the access token is not a signed JWT")
	}

	// Header.
	h, cached := v.cachedHeader(tok[:dot1])
	if !cached {
		var err error
		if h, err = v.parseHeader(tok[:dot1]); err != nil {
			return nil, err
		}
	}

	// Signature.
	k, err := v.key(ctx, h.Kid)
	if err != nil {
		return nil, err
	}
	if !k.accepts(h.Alg) {
		return nil, invalidf("the access token's algorithm does not match its key", "alg %s, key %s", h.Alg, h.Kid)
	}
	var sbuf [512]byte
	sig, err := decodeSegment(sbuf[:0], tok[dot2+1:])
	if err != nil {
		return nil, invalidf("the access token's signature is invalid", "%v", err)
	}
	if err := methods[h.Alg].Verify(tok[:dot2], sig, k.pub); err != nil {
		return nil, invalid("the access token's signature is invalid")
	}
	if !cached && v.numHeaders.Load() < maxHeaders {
		// A copy, so the cache does not keep the whole token alive.
		if _, loaded := v.headers.LoadOrStore(strings.Clone(tok[:dot1]), h); !loaded {
			v.numHeaders.Add(1)
		}
	}

	// Claims.
	raw, err := decodeSegment(nil, tok[dot1+1:dot2])
	if err != nil {
		return nil, invalidf("the access token's claims are malformed", "%v", err)
	}
	vd := &verified{}
	if err := json.Unmarshal(raw, &vd.p); err != nil {
		return nil, invalidf("the access token's claims are malformed", "%v", err)
	}
	p := &vd.p
	if p.Iss != v.issuer {
		return nil, invalidf("the access token is from another issuer", "iss %q", p.Iss)
	}
	if len(v.audience) > 0 && !slices.ContainsFunc(p.Aud, func(a string) bool { return slices.Contains(v.audience, a) }) {
		return nil, invalidf("the access token is not for this audience", "aud %q", []string(p.Aud))
	}
	switch {
	case p.Sub == "":
		return nil, invalid("the access token has no subject (sub)")
	case p.ClientID == "":
		return nil, invalid("the access token has no client_id")
	case p.Jti == "":
		return nil, invalid("the access token has no id (jti)")
	case !p.Iat.set:
		return nil, invalid("the access token has no issue time (iat)")
	case !p.Exp.set:
		return nil, invalid("the access token has no expiry (exp)")
	}
	now := v.now()
	late := now.Add(v.leeway)
	if late.Before(p.Iat.t) {
		return nil, invalid("the access token is issued in the future (iat)")
	}
	if p.Nbf.set && late.Before(p.Nbf.t) {
		return nil, invalid("the access token is not valid yet (nbf)")
	}
	if !now.Before(p.Exp.t.Add(v.leeway)) {
		return nil, &tokenError{kind: ErrExpired, desc: "the access token expired", detail: "at " + p.Exp.t.UTC().Format(time.RFC3339)}
	}

	vd.Claims = Claims{
		Issuer: p.Iss, Subject: p.Sub, Audience: p.Aud, ClientID: p.ClientID, Roles: p.Roles,
		SessionID: p.Sid, ID: p.Jti, IssuedAt: p.Iat.t, NotBefore: p.Nbf.t, ExpiresAt: p.Exp.t,
		payload: raw,
	}
	if p.Scope != "" {
		vd.Scopes = strings.Fields(p.Scope)
	}
	if v.rev != nil {
		if err := v.rev.check(&vd.Claims); err != nil {
			return nil, err
		}
	}
	return &vd.Claims, nil
}

func (v *Verifier) cachedHeader(enc string) (*header, bool) {
	if h, ok := v.headers.Load(enc); ok {
		return h.(*header), true
	}
	return nil, false
}

// parseHeader decodes and checks a JOSE header.
func (v *Verifier) parseHeader(enc string) (*header, error) {
	raw, err := decodeSegment(nil, enc)
	if err != nil {
		return nil, invalidf("the access token is not a signed JWT", "header: %v", err)
	}
	h := &header{}
	if err := json.Unmarshal(raw, h); err != nil {
		return nil, invalidf("the access token is not a signed JWT", "header: %v", err)
	}
	i := algIndex(h.Alg)
	if i < 0 || !v.algs[i] {
		return nil, invalidf("the access token's algorithm is not accepted", "alg %q", h.Alg)
	}
	if !isAccessTokenType(h.Typ) {
		return nil, invalidf("the token is not an access token (typ must be at+jwt)", "typ %q", h.Typ)
	}
	if h.Crit != nil {
		return nil, invalid("the access token has a critical header parameter this verifier does not support")
	}
	if h.Kid == "" {
		return nil, invalid("the access token has no key id (kid)")
	}
	return h, nil
}

// decodeSegment appends the decoding of s, unpadded base64url, to dst
// (growing it only if s does not fit). It refuses padding, characters
// outside the alphabet and non-zero trailing bits, so a token has exactly
// one encoding. It works on the string directly: no copy of s is made.
func decodeSegment(dst []byte, s string) ([]byte, error) {
	if len(s)%4 == 1 {
		return nil, errors.New("bad base64url length")
	}
	if n := len(dst) + len(s)*3/4; n > cap(dst) {
		dst = append(make([]byte, 0, n), dst...)
	}
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		c := b64Decode[s[i]]
		if c == 0xff {
			return nil, errors.New("not base64url")
		}
		acc = acc<<6 | uint32(c)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst = append(dst, byte(acc>>bits))
		}
	}
	if acc&(1<<bits-1) != 0 {
		return nil, errors.New("non-canonical base64url")
	}
	return dst, nil
}

// b64Decode maps a base64url character to its value, 0xff for others.
var b64Decode = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = byte(i)
	}
	return t
}()

// isAccessTokenType: typ names the at+jwt media type, "application/" may
// be omitted (RFC 7515 §4.1.9), and media types compare case-insensitively.
func isAccessTokenType(typ string) bool {
	typ, _ = cutPrefixFold(typ, "application/")
	return strings.EqualFold(typ, "at+jwt")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// audience is aud: a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if ss, ok := plainStrings(b); ok {
		*a = ss
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = ss
	return nil
}

// plainStrings decodes a JSON string or array of strings as tokend writes
// them — no whitespace, no escapes, no control or non-ASCII bytes —
// without going through encoding/json. ok is false for anything else.
func plainStrings(b []byte) (ss []string, ok bool) {
	str := func(b []byte) (string, []byte, bool) {
		if len(b) < 2 || b[0] != '"' {
			return "", nil, false
		}
		for i := 1; i < len(b); i++ {
			switch c := b[i]; {
			case c == '"':
				return string(b[1:i]), b[i+1:], true
			case c == '\\' || c < 0x20 || c >= 0x7f:
				return "", nil, false
			}
		}
		return "", nil, false
	}
	if len(b) > 0 && b[0] == '"' {
		s, rest, ok := str(b)
		return []string{s}, ok && len(rest) == 0
	}
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	b = b[1:]
	if len(b) == 1 && b[0] == ']' {
		return []string{}, true
	}
	for {
		s, rest, ok := str(b)
		if !ok || len(rest) == 0 {
			return nil, false
		}
		ss = append(ss, s)
		switch rest[0] {
		case ']':
			return ss, len(rest) == 1
		case ',':
			b = rest[1:]
		default:
			return nil, false
		}
	}
}

// numericDate is a NumericDate claim (RFC 7519 §2): seconds since the
// epoch, possibly fractional.
type numericDate struct {
	t   time.Time
	set bool
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != f || f > 1e15 || f < -1e15 {
		return fmt.Errorf("a time claim is not a number: %.20s", b)
	}
	sec := int64(f)
	d.t = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	d.set = true
	return nil
}
