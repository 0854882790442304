package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tokend/tokend/verify/dpop"
	"github.com/tokend/tokend/verify/internal/jose"
)

// DPoP configures WithDPoP: how a Verifier checks the DPoP proofs of
// requests with DPoP-bound tokens (RFC 9449 §7).
type DPoP struct {
	// PublicURL is this service's URL as its clients address it — scheme,
	// host, port if not the default, and the path prefix a proxy strips,
	// if any, e.g. "https://api.example.com/orders-service". A proof's htu
	// must be PublicURL + the request's path. It is configuration, never
	// guessed from the Host or X-Forwarded-* headers of requests, which a
	// client controls.
	PublicURL string
	// RequestURL, instead of PublicURL, gives the URL (htu) a request was
	// sent to, for a service that knows better (several host names, say,
	// or proxy headers it can trust because only its proxy reaches it).
	// Its query is ignored.
	RequestURL func(*http.Request) string
	// Require refuses tokens that are not DPoP-bound (RFC 9449 §7.2):
	// without it they keep working under the Bearer scheme.
	Require bool
	// Algorithms is the allow-list of proofs [dpop.DefaultAlgorithms:
	// ES256 and EdDSA]; RS256 may be added.
	Algorithms []string
	// MaxAge and Skew bound a proof's iat to [now − MaxAge, now + Skew]
	// [dpop.DefaultMaxAge, dpop.DefaultSkew].
	MaxAge, Skew time.Duration
	// Replay remembers the proofs used, so that each is accepted once
	// [dpop.NewMemoryReplayCache(dpop.DefaultReplayEntries): one per
	// process]. Replicas of a service behind one load balancer should
	// share one (docs/integration.md shows one in Redis): otherwise a
	// proof captured on its way to one replica can be replayed at another
	// within its window.
	Replay dpop.ReplayCache
	// Nonces, if set, makes clients put this service's nonce in their
	// proofs (RFC 9449 §9): a request without a valid one is answered 401
	// use_dpop_nonce with a DPoP-Nonce header, and every answer to a DPoP
	// request carries the current nonce.
	Nonces *dpop.Nonces
}

// WithDPoP makes the Verifier accept DPoP-bound access tokens (cnf.jkt)
// under the DPoP authorization scheme, each with a valid proof of its key
// (see DPoP and VerifyRequest). Without it, bound tokens are refused.
func WithDPoP(d DPoP) Option {
	return func(o *options) { o.dpop = &d }
}

// dpopChecker is a Verifier's DPoP configuration, checked.
type dpopChecker struct {
	DPoP
	algs string // the allow-list, for WWW-Authenticate algs
}

func newDPoPChecker(d DPoP) (*dpopChecker, error) {
	switch {
	case (d.PublicURL == "") == (d.RequestURL == nil):
		return nil, errors.New("verify: WithDPoP needs PublicURL or RequestURL (one of them)")
	case d.PublicURL != "":
		if err := checkURL(d.PublicURL); err != nil || strings.ContainsAny(d.PublicURL, "?#") {
			return nil, fmt.Errorf("verify: DPoP.PublicURL %q is not an http(s) URL without query", d.PublicURL)
		}
		d.PublicURL = strings.TrimSuffix(d.PublicURL, "/")
	}
	if len(d.Algorithms) == 0 {
		d.Algorithms = dpop.DefaultAlgorithms
	}
	for _, a := range d.Algorithms {
		if jose.AlgIndex(a) < 0 {
			return nil, fmt.Errorf("verify: DPoP algorithm %q is not supported (use %s, %s or %s)", a, ES256, EdDSA, RS256)
		}
	}
	if d.Replay == nil {
		d.Replay = dpop.NewMemoryReplayCache(dpop.DefaultReplayEntries)
	}
	return &dpopChecker{DPoP: d, algs: strings.Join(d.Algorithms, " ")}, nil
}

// requestURL is the htu a proof for r must have.
func (d *dpopChecker) requestURL(r *http.Request) string {
	if d.RequestURL != nil {
		return d.RequestURL(r)
	}
	return d.PublicURL + r.URL.EscapedPath()
}

// Authorization schemes.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// VerifyRequest checks the access token of r — RFC 6750 §2.1's
// "Authorization: Bearer <token>", or RFC 9449 §7.1's "Authorization:
// DPoP <token>" with one DPoP header — at the Verifier's clock:
//   - a token that is not DPoP-bound is accepted under Bearer (unless
//     WithDPoP's Require), and refused under DPoP;
//   - a DPoP-bound token (cnf.jkt) is refused under Bearer; under DPoP it
//     needs WithDPoP and a proof (checked by dpop.Check) for r's method
//     and URL, with ath the hash of the token, iat within the window, the
//     nonce if the Verifier has Nonces, a key whose thumbprint is cnf.jkt,
//     and an id the replay cache has not seen.
//
// Its errors match ErrNoToken, ErrMalformed, ErrExpired, ErrInvalid (with
// dpop.ErrInvalidProof or dpop.ErrUseNonce for a refused proof) or
// ErrUnavailable; Middleware answers each.
func (v *Verifier) VerifyRequest(r *http.Request) (*Claims, error) {
	c, _, err := v.verifyRequest(r)
	return c, err
}

// verifyRequest is VerifyRequest, which also says the scheme the request
// used ("" if none).
func (v *Verifier) verifyRequest(r *http.Request) (*Claims, string, error) {
	scheme, tok, err := authorization(r)
	if err != nil {
		return nil, scheme, err
	}
	now := v.now()
	if scheme == schemeDPoP && v.dpop == nil {
		return nil, scheme, invalid("this service does not accept DPoP-bound access tokens")
	}
	c, err := v.verifyToken(r.Context(), tok, now)
	if err != nil {
		return nil, scheme, err
	}
	bound := c.Confirmation.JKT != ""
	if scheme == schemeBearer {
		switch {
		case bound:
			return nil, scheme, errBound
		case v.dpop != nil && v.dpop.Require:
			return nil, scheme, invalid("this service accepts only DPoP-bound access tokens")
		}
		return c, scheme, nil
	}
	if !bound {
		return nil, scheme, invalid("the access token is not DPoP-bound: present it with the Bearer scheme")
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return nil, scheme, proofError(&dpop.Error{Err: dpop.ErrInvalidProof, Reason: "the request must carry exactly one DPoP header"})
	}
	d := v.dpop
	params := dpop.Params{
		Method: r.Method, URL: d.requestURL(r), AccessToken: tok, Now: now,
		MaxAge: d.MaxAge, Skew: d.Skew, Algorithms: d.Algorithms,
	}
	if d.Nonces != nil {
		params.Nonce = d.Nonces.Check
	}
	p, err := dpop.Check(proofs[0], params)
	if err != nil {
		return nil, scheme, proofError(err)
	}
	if p.JKT != c.Confirmation.JKT {
		// RFC 9449 §7.1: a proof by another key is a key binding the
		// token does not have.
		return nil, scheme, invalid("the DPoP proof is not signed by the key the access token is bound to")
	}
	seen, err := d.Replay.Seen(r.Context(), p.ID, p.Expiry)
	if err != nil {
		return nil, scheme, &tokenError{kind: ErrUnavailable, desc: "the DPoP replay cache cannot answer", cause: err}
	}
	if seen {
		return nil, scheme, proofError(&dpop.Error{Err: dpop.ErrInvalidProof, Reason: "the DPoP proof was used before"})
	}
	return c, scheme, nil
}

// proofError is a refused proof as a Verify error: invalid, with the
// dpop error (and its reason) as cause.
func proofError(err error) error {
	desc := "the DPoP proof is invalid"
	var de *dpop.Error
	if errors.As(err, &de) {
		desc = de.Reason
	}
	return &tokenError{kind: ErrInvalid, desc: desc, cause: err}
}

// authorization returns the scheme and token of r's Authorization header.
func authorization(r *http.Request) (scheme, tok string, err error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", "", &tokenError{kind: ErrNoToken, desc: "an access token is required"}
	}
	if len(vals) > 1 {
		return "", "", &tokenError{kind: ErrMalformed, desc: "the request has more than one Authorization header"}
	}
	s, rest, _ := strings.Cut(vals[0], " ")
	switch {
	case strings.EqualFold(s, schemeBearer):
		scheme = schemeBearer
	case strings.EqualFold(s, schemeDPoP):
		scheme = schemeDPoP
	default:
		return "", "", invalid("the Authorization header must carry an access token with the Bearer or DPoP scheme")
	}
	tok = strings.TrimSpace(rest)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return scheme, "", &tokenError{kind: ErrMalformed, desc: "the Authorization header must be the scheme and one token"}
	}
	return scheme, tok, nil
}

// authContext is what Middleware puts in a request's context.
type authContext struct {
	claims *Claims
	scheme string
}

type claimsKey struct{}

// ClaimsFrom returns the claims Middleware put in a request's context.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	a, _ := ctx.Value(claimsKey{}).(*authContext)
	if a == nil || a.claims == nil {
		return nil, false
	}
	return a.claims, true
}

// NewContext returns a copy of ctx carrying c, as Middleware does for a
// Bearer token (for tests of handlers behind it).
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, &authContext{claims: c, scheme: schemeBearer})
}

// schemeFrom is the scheme of the token whose claims ctx carries.
func schemeFrom(ctx context.Context) string {
	if a, ok := ctx.Value(claimsKey{}).(*authContext); ok && a != nil {
		return a.scheme
	}
	return schemeBearer
}
