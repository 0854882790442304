package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type claimsKey struct{}

// ClaimsFrom returns the claims Middleware put in a request's context.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// NewContext returns a copy of ctx carrying c, as Middleware does (for
// tests of handlers behind it).
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// Middleware verifies the bearer token of every request (RFC 6750 §2.1:
// the Authorization header only) and calls next with the token's Claims in
// the request context. It answers
//   - 401 with WWW-Authenticate: Bearer, and no error code, when the request
//     has no bearer token (RFC 6750 §3.1);
//   - 400 Bearer error="invalid_request" for a malformed Authorization
//     header (repeated, or "Bearer" without a token);
//   - 401 Bearer error="invalid_token" with an error_description for a
//     token that fails Verify, plus the header Token-Expired: true when
//     expiry is its only problem;
//   - 503 with Retry-After when the signing keys cannot be fetched.
//
// Error bodies are JSON: {"error": …, "error_description": …}.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, problem := bearerToken(r)
		switch {
		case problem != "":
			writeChallenge(w, http.StatusBadRequest, "invalid_request", problem, "")
			return
		case tok == "":
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeBody(w, http.StatusUnauthorized, "", "a bearer token is required")
			return
		}
		c, err := v.Verify(r.Context(), tok)
		if err != nil {
			var te *tokenError
			desc := "the access token is invalid"
			if errors.As(err, &te) {
				desc = te.desc
			}
			switch {
			case errors.Is(err, ErrExpired):
				w.Header().Set("Token-Expired", "true")
				writeChallenge(w, http.StatusUnauthorized, "invalid_token", desc, "")
			case errors.Is(err, ErrUnavailable):
				msg := "the token signing keys cannot be fetched; retry later"
				if desc == feedDown {
					msg = feedDown + "; retry later"
				}
				w.Header().Set("Retry-After", "1")
				writeBody(w, http.StatusServiceUnavailable, "temporarily_unavailable", msg)
			default:
				writeChallenge(w, http.StatusUnauthorized, "invalid_token", desc, "")
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

// bearerToken returns the request's bearer token, "" if it has none, or a
// problem with its Authorization header.
func bearerToken(r *http.Request) (tok, problem string) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", ""
	}
	if len(vals) > 1 {
		return "", "the request has more than one Authorization header"
	}
	scheme, rest, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "" // another scheme: no bearer credentials
	}
	tok = strings.TrimSpace(rest)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", "the Authorization header must be the word Bearer and one token"
	}
	return tok, ""
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
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeBody(w, http.StatusUnauthorized, "", "a bearer token is required")
				return
			}
			if !ok(c) {
				writeChallenge(w, http.StatusForbidden, "insufficient_scope", desc, scope)
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

// writeChallenge answers with WWW-Authenticate: Bearer error=…. desc and
// scope are fixed texts of this package (RFC 6750 §3: no quotes or
// backslashes).
func writeChallenge(w http.ResponseWriter, status int, code, desc, scope string) {
	ch := `Bearer error="` + code + `", error_description="` + desc + `"`
	if scope != "" {
		ch += `, scope="` + scope + `"`
	}
	w.Header().Set("WWW-Authenticate", ch)
	writeBody(w, status, code, desc)
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
