package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tokend/tokend/verify/dpop"
)

// Middleware verifies the access token of every request (VerifyRequest:
// the Authorization header only, Bearer or DPoP) and calls next with the
// token's Claims in the request context. It answers
//   - 401 with WWW-Authenticate: Bearer, and no error code, when the request
//     has no Authorization header (RFC 6750 §3.1);
//   - 400 error="invalid_request" for a malformed Authorization header
//     (repeated, or a scheme without a token);
//   - 401 error="invalid_token" with an error_description for a token that
//     fails, or one under another scheme than Bearer or DPoP, plus the
//     header Token-Expired: true when expiry is its only problem;
//   - 401 DPoP error="invalid_dpop_proof" for a refused DPoP proof, and
//     DPoP error="use_dpop_nonce" with a DPoP-Nonce header when the proof
//     lacks this service's current nonce (RFC 9449 §7.1, §9);
//   - 503 with Retry-After when the signing keys cannot be fetched (or the
//     revocation feed is down and fails closed, or the replay cache
//     cannot answer).
//
// The challenge names the scheme the request used; with WithDPoP a
// challenge for Bearer comes with a second one, DPoP algs="…" (RFC 9449
// §7.1), and with DPoP's Require, DPoP alone. Error bodies are JSON:
// {"error": …, "error_description": …}.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, scheme, err := v.verifyRequest(r)
		if scheme == schemeDPoP && v.dpop != nil && v.dpop.Nonces != nil {
			w.Header().Set("DPoP-Nonce", v.dpop.Nonces.Current(v.now()))
		}
		if err != nil {
			v.refuse(w, scheme, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, &authContext{claims: c, scheme: scheme})))
	})
}

// refuse answers a request whose token VerifyRequest refused.
func (v *Verifier) refuse(w http.ResponseWriter, scheme string, err error) {
	var te *tokenError
	desc := "the access token is invalid"
	if errors.As(err, &te) {
		desc = te.desc
	}
	switch {
	case errors.Is(err, ErrNoToken):
		v.challenge(w, scheme, "", "", "")
		writeBody(w, http.StatusUnauthorized, "", "an access token is required")
	case errors.Is(err, ErrMalformed):
		v.challenge(w, scheme, "invalid_request", desc, "")
		writeBody(w, http.StatusBadRequest, "invalid_request", desc)
	case errors.Is(err, ErrUnavailable):
		// The signing keys, the revocation feed (failing closed) or the
		// replay cache, as desc says.
		w.Header().Set("Retry-After", "1")
		writeBody(w, http.StatusServiceUnavailable, "temporarily_unavailable", desc+"; retry later")
	case errors.Is(err, dpop.ErrUseNonce):
		v.challenge(w, schemeDPoP, "use_dpop_nonce", desc, "")
		writeBody(w, http.StatusUnauthorized, "use_dpop_nonce", desc)
	case errors.Is(err, dpop.ErrInvalidProof):
		v.challenge(w, schemeDPoP, "invalid_dpop_proof", desc, "")
		writeBody(w, http.StatusUnauthorized, "invalid_dpop_proof", desc)
	default:
		if errors.Is(err, ErrExpired) {
			w.Header().Set("Token-Expired", "true")
		}
		v.challenge(w, scheme, "invalid_token", desc, "")
		writeBody(w, http.StatusUnauthorized, "invalid_token", desc)
	}
}

// challengeParams are the auth-params of a challenge with an error code
// ("" for none).
func challengeParams(code, desc, scope string) string {
	if code == "" {
		return ""
	}
	p := `error="` + code + `", error_description="` + desc + `"`
	if scope != "" {
		p += `, scope="` + scope + `"`
	}
	return p
}

// challenge sets WWW-Authenticate for an answer to a request that used
// scheme ("" for none): the error, if any, on that scheme's challenge,
// and DPoP's algs beside Bearer's when the Verifier takes DPoP (RFC 9449
// §7.1), or DPoP's alone when it requires it. desc and scope are fixed
// texts of this module (RFC 6750 §3: no quotes or backslashes).
func (v *Verifier) challenge(w http.ResponseWriter, scheme, code, desc, scope string) {
	params := challengeParams(code, desc, scope)
	withParams := func(ch, p string) string {
		if p == "" {
			return ch
		}
		return ch + " " + p
	}
	h := w.Header()
	if v.dpop == nil {
		h.Set("WWW-Authenticate", withParams(schemeBearer, params))
		return
	}
	algs := `algs="` + v.dpop.algs + `"`
	switch {
	case scheme == schemeDPoP || v.dpop.Require:
		if params != "" {
			algs = params + ", " + algs
		}
		h.Set("WWW-Authenticate", schemeDPoP+" "+algs)
	default:
		h.Set("WWW-Authenticate", withParams(schemeBearer, params))
		h.Add("WWW-Authenticate", schemeDPoP+" "+algs)
	}
}

// RequireScope returns middleware that lets a request through only if the
// token (verified by Middleware, which must run first) was granted scope;
// otherwise it answers 403 with WWW-Authenticate: Bearer
// error="insufficient_scope" and scope="<scope>" (RFC 6750 §3.1). It
// panics if scope is not an RFC 6749 scope token.
func RequireScope(scope string) func(http.Handler) http.Handler {
	mustBeToken("RequireScope", scope)
	desc := "the access token lacks the scope " + scope
	return require(func(c *Claims) bool { return c.HasScope(scope) }, desc, scope)
}

// RequireRole returns middleware that lets a request through only if the
// token's roles claim (see Middleware) includes role; otherwise it answers
// 403 with WWW-Authenticate: Bearer error="insufficient_scope". It panics
// if role holds spaces, quotes, backslashes or control characters.
func RequireRole(role string) func(http.Handler) http.Handler {
	mustBeToken("RequireRole", role)
	desc := "the access token lacks the role " + role
	return require(func(c *Claims) bool { return c.HasRole(role) }, desc, "")
}

func require(ok func(*Claims) bool, desc, scope string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, found := ClaimsFrom(r.Context())
			if !found {
				// Middleware did not run: treat as unauthenticated.
				w.Header().Set("WWW-Authenticate", schemeBearer)
				writeBody(w, http.StatusUnauthorized, "", "an access token is required")
				return
			}
			if !ok(c) {
				w.Header().Set("WWW-Authenticate", schemeFrom(r.Context())+" "+challengeParams("insufficient_scope", desc, scope))
				writeBody(w, http.StatusForbidden, "insufficient_scope", desc)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// mustBeToken panics unless s is an RFC 6749 §3.3 scope-token, which is
// also safe inside a quoted WWW-Authenticate parameter.
func mustBeToken(fn, s string) {
	if s == "" {
		panic("verify: " + fn + ": empty name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			panic("verify: " + fn + ": " + s + " is not a scope token (printable ASCII without spaces, quotes or backslashes)")
		}
	}
}

func writeBody(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description"`
	}{code, desc})
	_, _ = w.Write(append(b, '\n'))
}
