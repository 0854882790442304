// Package verify checks tokend access tokens — in a resource server,
// locally, without calling tokend per request, and in tokend itself, whose
// introspection endpoint runs the same checks (docs/design.md, "Access
// tokens").
//
// A Verifier made by New learns tokend's jwks_uri from its RFC 8414
// metadata, fetches the JSON Web Key Set and caches it for as long as its
// Cache-Control max-age says. If tokend cannot be reached when New runs
// (the service started first), New still returns a Verifier, which reads
// the metadata on first use and answers ErrUnavailable until it can. A
// token signed by a key it does not know (tokend rotated keys, or
// restarted with a new development key) makes it fetch the set again at
// once, shared by every concurrent caller and at most once per
// WithRefetchInterval, so forged kids cannot make it hammer tokend. If
// tokend cannot be reached, the keys it has keep working. A Verifier made
// by NewWithKeys checks tokens against keys it is given.
//
// Verify accepts an access token (RFC 9068) only if
//   - it is a compact JWS with header typ "at+jwt" and no "crit";
//   - its alg is on the allow-list (ES256, EdDSA and RS256 by default;
//     "none" and HMAC algorithms can never be allowed) and matches the
//     key named by its kid (the key's alg, or its kty and crv);
//   - the signature verifies with that key;
//   - iss is the issuer; aud contains one of WithAudience's values (New
//     refuses to make a Verifier that checks no audience unless told so
//     with InsecureSkipAudienceCheck); sub, client_id, jti, iat and exp
//     are present;
//   - iat and nbf are not in the future and exp is not past, each with a
//     leeway (WithLeeway, 30 s by default);
//   - every claim it reads has its one JSON type (a NumericDate is a JSON
//     number, RFC 7519 §2) and member names match exactly;
//   - it is not bound to a key (cnf, RFC 7800): a DPoP-bound token
//     (cnf.jkt, RFC 9449) is accepted only with a proof of its key, which
//     VerifyRequest and Middleware check (see WithDPoP); and its act claim
//     (RFC 8693 §4.1), if any, is a chain of actors with a subject each.
//
// A token that verified is remembered (WithTokenCache), keyed by its exact
// bytes: a token seen again costs a map lookup, and still has its expiry,
// audience, revocation and the presence of its signing key in the JWKS
// checked on every use.
//
// An expired token that is otherwise valid gives an error matching
// ErrExpired — the one case where getting a new access token helps — and
// every other failure an error matching ErrInvalid (or ErrUnavailable when
// the keys could not be fetched).
//
// VerifyRequest checks the token of an HTTP request — Bearer, or DPoP
// with its proof (RFC 9449 §7.1) — and Middleware puts the Claims of a
// valid one in the request context (ClaimsFrom) and answers the others as
// RFC 6750 §3 and RFC 9449 §7.1 say; RequireScope and RequireRole answer
// 403 insufficient_scope. The DPoP proofs themselves are checked by the
// package verify/dpop, which also makes them for clients (dpop.Transport).
//
// The package is a Go module of its own (github.com/tokend/tokend/verify)
// that depends only on golang-jwt, for the signature algorithms, and on
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/verify/internal/jose"
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
	// ErrNoToken: the request carries no access token (VerifyRequest).
	// Answer 401 with a bare challenge (RFC 6750 §3.1).
	ErrNoToken = errors.New("verify: no access token")
	// ErrMalformed: the request's Authorization (or DPoP) header is
	// malformed (VerifyRequest). Answer 400 invalid_request.
	ErrMalformed = errors.New("verify: malformed authorization")
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

	// DefaultTokenCacheEntries is how many verified tokens a Verifier
	// remembers by default (WithTokenCache).
	DefaultTokenCacheEntries = 10_000

	maxTokenBytes = 16 << 10
	maxHeaders    = 64
	maxBodyBytes  = 1 << 20
	fetchTimeout  = 10 * time.Second
)

// Algorithms a Verifier can check. The default allow-list is all of them.
const (
	ES256 = jose.ES256
	EdDSA = jose.EdDSA
	RS256 = jose.RS256
)

// Option configures a Verifier.
type Option func(*options)

type options struct {
	audience     []string
	skipAudience bool
	algs         []string
	leeway       time.Duration
	refetch      time.Duration
	client       *http.Client
	jwksURL      string
	now          func() time.Time
	log          *slog.Logger
	// checks run, in order, on the claims of a token that passed every
	// other check; an option defined elsewhere in this package (a
	// revocation list, say) adds one. An error it returns is Verify's.
	checks []func(context.Context, *Claims) error
	err    error

	revocations *Revocations // WithRevocations
	dpop        *DPoP        // WithDPoP
	cacheSize   int          // WithTokenCache
	delegation  delegation   // RequireDelegation, RefuseDelegation
	allowBound  bool         // AllowBoundTokens
}

// delegation says which tokens a Verifier accepts by their act claim.
type delegation int

const (
	delegationAny delegation = iota
	delegationRequired
	delegationRefused
)

// WithAudience requires the token's aud to contain at least one of aud:
// the identifiers this resource server answers to, as configured in
// tokend's JWT_AUDIENCE (RFC 9068 §4). A Verifier needs it, or
// InsecureSkipAudienceCheck.
func WithAudience(aud ...string) Option {
	return func(o *options) {
		if len(aud) == 0 || slices.Contains(aud, "") {
			o.err = errors.New("verify: WithAudience needs non-empty audiences")
			return
		}
		o.audience = append(o.audience, aud...)
	}
}

// InsecureSkipAudienceCheck makes a Verifier accept tokens whatever their
// aud says: a token tokend issued for any other service is accepted too.
// Use it only where every service trusting the issuer may also be called
// with every other's tokens — never in a resource server that others'
// tokens must not reach.
func InsecureSkipAudienceCheck() Option {
	return func(o *options) { o.skipAudience = true }
}

// WithAlgorithms sets the alg allow-list (default ES256, EdDSA and RS256).
// New fails for an algorithm this package cannot verify, which includes
// "none" and every HMAC algorithm: tokend's keys are asymmetric, and a
// public key must never serve as an HMAC secret.
func WithAlgorithms(algs ...string) Option {
	return func(o *options) {
		for _, a := range algs {
			if jose.AlgIndex(a) < 0 {
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

// WithTokenCache sets how many verified tokens the Verifier remembers
// [DefaultTokenCacheEntries]; n ≤ 0 turns the cache off. A remembered
// token is checked again without its signature: its exp, nbf, iat and aud,
// the revocation feed, and that the key that signed it is still published
// with the same key material, on every use; a key that leaves the JWKS
// drops its tokens at once. Each entry costs about 2 KB for a token of
// tokend's usual size (docs/design.md, "The verified-token cache").
func WithTokenCache(n int) Option {
	return func(o *options) { o.cacheSize = n }
}

// AllowBoundTokens makes Verify and VerifyAt return the claims of a
// DPoP-bound token (Claims.Confirmation.JKT set) without its proof, for a
// caller that checks the proof itself or reports the binding to one that
// does — tokend's introspection does (RFC 9449 §6.2). Without it they
// refuse such a token: presented without a proof, a copied token would
// work (VerifyRequest and Middleware check proofs; see WithDPoP).
func AllowBoundTokens() Option {
	return func(o *options) { o.allowBound = true }
}

// RequireDelegation accepts only tokens issued by token exchange (RFC
// 8693), those with an act claim: a service meant to be called by other
// services on a user's behalf, never by the user's own client.
func RequireDelegation() Option {
	return func(o *options) {
		if o.delegation == delegationRefused {
			o.err = errors.New("verify: RequireDelegation and RefuseDelegation contradict each other")
			return
		}
		o.delegation = delegationRequired
	}
}

// RefuseDelegation refuses tokens issued by token exchange (those with an
// act claim): a service that only the user's own client may call.
func RefuseDelegation() Option {
	return func(o *options) {
		if o.delegation == delegationRequired {
			o.err = errors.New("verify: RequireDelegation and RefuseDelegation contradict each other")
			return
		}
		o.delegation = delegationRefused
	}
}

// Verifier verifies access tokens of one issuer. It is safe for concurrent
// use; make one per issuer and share it.
type Verifier struct {
	issuer     string
	audience   []string                   // empty only with InsecureSkipAudienceCheck
	algs       [len(jose.Algorithms)]bool // indexed like jose.Algorithms
	leeway     time.Duration
	now        func() time.Time
	checks     []func(context.Context, *Claims) error
	delegation delegation
	allowBound bool
	cache      *tokenCache // nil when off
	dpop       *dpopChecker

	// static, when set, holds the keys (NewWithKeys); otherwise they come
	// from the JWKS at the URL the endpoints give, cached in keys.
	static    KeySet
	endpoints endpoints
	refetch   time.Duration
	client    *http.Client
	log       *slog.Logger
	keys      atomic.Pointer[keyCache]
	flights   flights

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
// issuer must be issuerURL. Keys are fetched on first use. New fails
// without WithAudience or InsecureSkipAudienceCheck, and when the metadata
// is wrong (another issuer, no jwks_uri, a 404); when tokend cannot be
// reached (a network error, a 5xx, 408 or 429) it logs a warning and
// returns a Verifier that reads the metadata on first use — until it can,
// Verify answers ErrUnavailable (503) — so a service need not start after
// tokend.
func New(ctx context.Context, issuerURL string, opts ...Option) (*Verifier, error) {
	v, o, err := newVerifier(issuerURL, opts)
	if err != nil {
		return nil, err
	}
	v.refetch, v.client, v.log = o.refetch, o.client, o.log
	if v.client == nil {
		v.client = &http.Client{Timeout: fetchTimeout}
	}
	if v.log == nil {
		v.log = slog.New(discardHandler{})
	}
	known := true
	if o.jwksURL != "" {
		if err := checkURL(o.jwksURL); err != nil {
			return nil, fmt.Errorf("verify: jwks_uri: %w", err)
		}
		v.endpoints.jwks, v.endpoints.known = o.jwksURL, true
	} else if err := checkURL(issuerURL); err != nil {
		return nil, fmt.Errorf("verify: issuer: %w", err)
	} else if _, _, err := v.resolve(ctx); err != nil {
		if !isTransient(err) {
			return nil, err
		}
		known = false
		v.log.LogAttrs(ctx, slog.LevelWarn, "verify: tokend cannot be reached yet; its metadata will be read on first use",
			slog.String("issuer", v.issuer), slog.String("error", err.Error()))
	}
	if r := o.revocations; r != nil {
		if err := v.followRevocations(ctx, *r, known); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// NewWithKeys returns a Verifier for tokens issued by issuerURL and signed
// by keys of ks, which it asks for every token and never fetches: tokend
// verifies its own tokens with it. Of the options, those about fetching
// keys (WithJWKSURL, WithHTTPClient, WithRefetchInterval, WithLogger) have
// no effect. It fails without WithAudience or InsecureSkipAudienceCheck.
func NewWithKeys(issuerURL string, ks KeySet, opts ...Option) (*Verifier, error) {
	if ks == nil {
		return nil, errors.New("verify: nil KeySet")
	}
	v, _, err := newVerifier(issuerURL, opts)
	if err != nil {
		return nil, err
	}
	v.static = ks
	return v, nil
}

// newVerifier applies opts and fills in what both constructors share.
func newVerifier(issuerURL string, opts []Option) (*Verifier, *options, error) {
	o := &options{leeway: DefaultLeeway, refetch: DefaultRefetchInterval, cacheSize: DefaultTokenCacheEntries}
	for _, opt := range opts {
		opt(o)
	}
	switch {
	case o.err != nil:
		return nil, nil, o.err
	case issuerURL == "":
		return nil, nil, errors.New("verify: empty issuer URL")
	case len(o.audience) == 0 && !o.skipAudience:
		return nil, nil, errors.New("verify: no audience: pass WithAudience(<this service's identifier in tokend's JWT_AUDIENCE>), " +
			"or InsecureSkipAudienceCheck() to accept tokens issued for any service")
	case len(o.audience) > 0 && o.skipAudience:
		return nil, nil, errors.New("verify: WithAudience and InsecureSkipAudienceCheck contradict each other")
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.algs == nil {
		o.algs = jose.Algorithms[:]
	}
	v := &Verifier{
		issuer: issuerURL, audience: slices.Clone(o.audience), leeway: o.leeway, now: o.now,
		checks: slices.Clone(o.checks), delegation: o.delegation, allowBound: o.allowBound,
	}
	for _, a := range o.algs {
		v.algs[jose.AlgIndex(a)] = true
	}
	if o.cacheSize > 0 {
		v.cache = newTokenCache(o.cacheSize)
	}
	if o.dpop != nil {
		d, err := newDPoPChecker(*o.dpop)
		if err != nil {
			return nil, nil, err
		}
		v.dpop = d
	}
	return v, o, nil
}

// endpoints are the URLs a Verifier made by New reads from tokend: the
// JWKS's, and the revocation feed's when the metadata names one. They are
// known at New (WithJWKSURL, or the metadata read then) or read from the
// metadata on first use.
type endpoints struct {
	mu     sync.Mutex // held while the metadata is read
	known  bool
	jwks   string
	events string // "" if the metadata names none
}

// resolve returns the endpoints, reading the issuer's metadata if they
// are not known yet.
func (v *Verifier) resolve(ctx context.Context) (jwks, events string, err error) {
	e := &v.endpoints
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.known {
		if jwks, events, err = v.discover(ctx); err != nil {
			return "", "", err
		}
		e.jwks, e.events, e.known = jwks, events, true
	}
	return e.jwks, e.events, nil
}

// discover reads jwks_uri from the issuer's metadata.
func (v *Verifier) discover(ctx context.Context) (jwks, events string, err error) {
	mdURL := strings.TrimSuffix(v.issuer, "/") + "/.well-known/oauth-authorization-server"
	body, _, err := v.get(ctx, mdURL)
	if err != nil {
		return "", "", fmt.Errorf("verify: read issuer metadata: %w", err)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
		// tokend's revocation feed (WithRevocations); may be absent.
		Events string `json:"revocation_events_endpoint"`
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
	if err := checkURL(md.JWKSURI); err != nil {
		return "", "", fmt.Errorf("verify: jwks_uri: %w", err)
	}
	return md.JWKSURI, md.Events, nil
}

// isTransient: err is a failure to reach a server (the network, or an
// answer that says "later": 5xx, 408, 429), which trying again may cure —
// not a wrong answer.
func isTransient(err error) bool {
	var st *statusError
	if errors.As(err, &st) {
		return st.code >= 500 || st.code == http.StatusRequestTimeout || st.code == http.StatusTooManyRequests
	}
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
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

// statusError is an answer other than 200.
type statusError struct {
	url    string
	code   int
	status string
}

func (e *statusError) Error() string { return "GET " + e.url + ": " + e.status }

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
		return nil, nil, &statusError{url: u, code: resp.StatusCode, status: resp.Status}
	}
	return body, resp.Header, nil
}

// Claims are the claims of a verified access token. The Claims a Verifier
// returns are the caller's, but their slices and Actor are shared with
// other callers that verified the same token: read them, do not modify
// them.
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
	KeyID     string    // kid of the key whose signature verified
	// Confirmation is cnf: the key a DPoP-bound token is bound to.
	Confirmation Confirmation
	// Actor is act, the actor of a token issued by token exchange, with
	// the actors before it; nil for a token the subject's own client got.
	Actor *Actor

	token string // the token, for Decode
}

// HasScope reports whether the token was granted scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// HasRole reports whether the token's subject has role r.
func (c *Claims) HasRole(r string) bool { return slices.Contains(c.Roles, r) }

// Decode unmarshals the token's whole JSON payload into v, for claims
// Claims does not have.
func (c *Claims) Decode(v any) error {
	dot1 := strings.IndexByte(c.token, '.')
	dot2 := strings.LastIndexByte(c.token, '.')
	if dot1 < 0 || dot2 <= dot1 {
		return errors.New("verify: Decode: no token")
	}
	raw, err := jose.Segment(nil, c.token[dot1+1:dot2])
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// tokenError is a Verify failure. desc is a fixed, safe text for the
// error_description of WWW-Authenticate; detail may quote the token.
type tokenError struct {
	kind   error // ErrInvalid, ErrExpired, ErrRevoked, ErrUnavailable, ErrNoToken or ErrMalformed
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

// errBound refuses a DPoP-bound token presented without a proof.
var errBound = invalid("the access token is DPoP-bound: present it with the DPoP scheme and a DPoP proof")

// Verify checks tok (the compact JWS of an access token, without "Bearer")
// at the Verifier's clock and returns its claims. ctx bounds a key fetch if
// one is needed. A DPoP-bound token is refused unless AllowBoundTokens was
// given: its proof is part of the request (VerifyRequest checks both).
func (v *Verifier) Verify(ctx context.Context, tok string) (*Claims, error) {
	return v.VerifyAt(ctx, tok, v.now())
}

// VerifyAt is Verify at the instant now instead of the Verifier's clock:
// for a caller that keeps its own clock, as tokend does.
func (v *Verifier) VerifyAt(ctx context.Context, tok string, now time.Time) (*Claims, error) {
	c, err := v.verifyToken(ctx, tok, now)
	if err != nil {
		return nil, err
	}
	if c.Confirmation.JKT != "" && !v.allowBound {
		return nil, errBound
	}
	return c, nil
}

// verifyToken runs every check of the token itself — all of Verify's but
// the binding's — through the cache of verified tokens: a token seen
// before has its signature checked no more, but what can change every
// time (checkUse) and its key's presence.
func (v *Verifier) verifyToken(ctx context.Context, tok string, now time.Time) (*Claims, error) {
	if v.cache != nil {
		if e := v.cache.get(tok); e != nil {
			k, err := v.lookup(ctx, e.claims.KeyID)
			if err == nil && sameKey(k, e.key) {
				if err := v.checkUse(ctx, &e.claims, now); err != nil {
					return nil, err
				}
				c := e.claims
				return &c, nil
			}
			// The key left the set or changed: check the token anew.
			v.cache.remove(tok)
		}
	}
	e, err := v.verifySigned(ctx, tok)
	if err != nil {
		return nil, err
	}
	if err := v.checkUse(ctx, &e.claims, now); err != nil {
		return nil, err
	}
	if v.cache == nil {
		return &e.claims, nil
	}
	// A copy, so the cache does not keep what tok is part of alive.
	tok = strings.Clone(tok)
	e.claims.token = tok
	v.cache.add(tok, e)
	c := e.claims
	return &c, nil
}

// verifySigned checks what a token says once and for all: its form, its
// signature, its issuer, the claims it must have and their types.
func (v *Verifier) verifySigned(ctx context.Context, tok string) (*cacheEntry, error) {
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
	k, err := v.lookup(ctx, h.Kid)
	if err != nil {
		return nil, err
	}
	if !k.Accepts(h.Alg) {
		return nil, invalidf("the access token's algorithm does not match its key", "alg %s, key %s", h.Alg, h.Kid)
	}
	var sbuf [512]byte
	sig, err := jose.Segment(sbuf[:0], tok[dot2+1:])
	if err != nil {
		return nil, invalidf("the access token's signature is invalid", "%v", err)
	}
	if err := k.Verify(h.Alg, tok[:dot2], sig); err != nil {
		return nil, invalid("the access token's signature is invalid")
	}
	if !cached && v.numHeaders.Load() < maxHeaders {
		// A copy, so the cache does not keep the whole token alive.
		if _, loaded := v.headers.LoadOrStore(strings.Clone(tok[:dot1]), h); !loaded {
			v.numHeaders.Add(1)
		}
	}

	// Claims.
	raw, err := jose.Segment(nil, tok[dot1+1:dot2])
	if err != nil {
		return nil, invalidf("the access token's claims are malformed", "%v", err)
	}
	e := &cacheEntry{key: k}
	var p payload
	if err := decodePayload(raw, &p); err != nil {
		return nil, invalidf("the access token's claims are malformed", "%v", err)
	}
	if p.Iss != v.issuer {
		return nil, invalidf("the access token is from another issuer", "iss %q", p.Iss)
	}
	switch {
	case p.Sub == "":
		return nil, invalid("the access token has no subject (sub)")
	case p.ClientID == "":
		return nil, invalid("the access token has no client_id")
	case p.Jti == "":
		return nil, invalid("the access token has no id (jti)")
	case !p.Iat.Set:
		return nil, invalid("the access token has no issue time (iat)")
	case !p.Exp.Set:
		return nil, invalid("the access token has no expiry (exp)")
	case v.delegation == delegationRequired && p.Act == nil:
		return nil, invalid("this service accepts only delegated access tokens (issued by token exchange)")
	case v.delegation == delegationRefused && p.Act != nil:
		return nil, invalid("this service does not accept delegated access tokens (issued by token exchange)")
	}
	e.claims = Claims{
		Issuer: p.Iss, Subject: p.Sub, Audience: p.Aud, ClientID: p.ClientID, Roles: p.Roles,
		SessionID: p.Sid, ID: p.Jti, IssuedAt: p.Iat.T, NotBefore: p.Nbf.T, ExpiresAt: p.Exp.T,
		KeyID: h.Kid, Confirmation: p.Cnf, Actor: p.Act, token: tok,
	}
	if p.Scope != "" {
		e.claims.Scopes = strings.Fields(p.Scope)
	}
	return e, nil
}

// checkUse checks what can change from one use of a token to the next:
// its audience (against this Verifier's), its times, and the checks of
// options (the revocation feed's).
func (v *Verifier) checkUse(ctx context.Context, c *Claims, now time.Time) error {
	if len(v.audience) > 0 && !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(v.audience, a) }) {
		return invalidf("the access token is not for this audience", "aud %q", c.Audience)
	}
	late := now.Add(v.leeway)
	if late.Before(c.IssuedAt) {
		return invalid("the access token is issued in the future (iat)")
	}
	if !c.NotBefore.IsZero() && late.Before(c.NotBefore) {
		return invalid("the access token is not valid yet (nbf)")
	}
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return &tokenError{kind: ErrExpired, desc: "the access token expired", detail: "at " + c.ExpiresAt.UTC().Format(time.RFC3339)}
	}
	for _, check := range v.checks {
		if err := check(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (v *Verifier) cachedHeader(enc string) (*header, bool) {
	if h, ok := v.headers.Load(enc); ok {
		return h.(*header), true
	}
	return nil, false
}

// parseHeader decodes and checks a JOSE header.
func (v *Verifier) parseHeader(enc string) (*header, error) {
	raw, err := jose.Segment(nil, enc)
	if err != nil {
		return nil, invalidf("the access token is not a signed JWT", "header: %v", err)
	}
	h, err := decodeHeader(raw)
	if err != nil {
		return nil, invalidf("the access token is not a signed JWT", "header: %v", err)
	}
	i := jose.AlgIndex(h.Alg)
	if i < 0 || !v.algs[i] {
		return nil, invalidf("the access token's algorithm is not accepted", "alg %q", h.Alg)
	}
	if !jose.IsType(h.Typ, "at+jwt") {
		return nil, invalidf("the token is not an access token (typ must be at+jwt)", "typ %q", h.Typ)
	}
	if h.Crit {
		return nil, invalid("the access token has a critical header parameter this verifier does not support")
	}
	if h.Kid == "" {
		return nil, invalid("the access token has no key id (kid)")
	}
	return h, nil
}

// discardHandler is a slog.Handler that drops everything (slog's own
// DiscardHandler needs Go 1.24).
type discardHandler struct{}

func (discardHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (discardHandler) Handle(context.Context, slog.Record) error { return nil }
func (d discardHandler) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discardHandler) WithGroup(string) slog.Handler           { return d }
