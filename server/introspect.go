package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// introspection is the RFC 7662 §2.2 answer.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	Sid       string   `json:"sid,omitempty"`
	Roles     []string `json:"roles,omitempty"`
}

var inactive = introspection{Active: false}

// handleIntrospect is POST /oauth/introspect (RFC 7662), for confidential
// clients (resource servers). An access token is active when its signature
// and claims verify and its session is still active — the online check
// that notices a revoked session before the JWT expires. A refresh token is
// described only to the client it was issued to.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	_, c, raw, err := s.clientRequest(w, r, "token")
	if err == nil && c.Public {
		err = newError(oautherrors.ErrUnauthorizedClient, "introspection requires a confidential client")
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	var out introspection
	if strings.HasPrefix(raw, token.RefreshPrefix) {
		out, err = s.introspectRefresh(r, c, raw)
	} else {
		out, err = s.introspectAccess(r, raw)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) introspectAccess(r *http.Request, raw string) (introspection, error) {
	cl, why, err := s.checkAccessToken(r.Context(), raw)
	if err != nil {
		return inactive, err
	}
	if why != nil {
		return inactive, nil
	}
	return introspection{
		Active: true, Scope: strings.Join(cl.Scopes, " "), ClientID: cl.ClientID, TokenType: "Bearer",
		Exp: cl.ExpiresAt.Unix(), Iat: cl.IssuedAt.Unix(), Nbf: cl.NotBefore.Unix(),
		Sub: cl.Subject, Aud: cl.Audience, Iss: cl.Issuer, Jti: cl.ID, Sid: cl.SessionID, Roles: cl.Roles,
	}, nil
}

// Why an otherwise valid access token is not active (see also
// errClientTokenEnded).
var (
	errSessionEnded = errors.New("the session of this access token has ended")
	errClientGone   = errors.New("the client of this access token was deleted")
)

// checkAccessToken is THE check of an access token that tokend itself
// relies on (introspection, GET /events and its own bearer-authenticated
// endpoints): verifySignature — the signature and claims as a resource
// server verifies them — then, for a user's token, that its session is
// still active: the online check that notices a revoked session before
// the JWT expires; for a client's own token (client_credentials: no
// session), that the client still exists and has not ended its tokens
// since (store.Client.TokenEnded: a rotated secret, a scope or grant taken
// away). why is nil for an active token, else the reason it is not
// (wrapping token.ErrExpired, token.ErrInvalid, or being errSessionEnded,
// errClientGone or errClientTokenEnded); err is a store failure (a 503).
func (s *Server) checkAccessToken(ctx context.Context, raw string) (cl *verify.Claims, why, err error) {
	now := s.o.Now()
	cl, why = s.verifySignature(raw, now)
	if why != nil {
		return cl, why, nil
	}
	if cl.SessionID == "" {
		c, err := s.o.Store.Client(ctx, cl.ClientID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, errClientGone, nil
		case err != nil:
			return nil, nil, storeErr(ctx, err)
		case c.TokenEnded(cl.IssuedAt):
			return nil, errClientTokenEnded, nil
		}
		return cl, nil, nil
	}
	sess, err := s.o.Store.Session(ctx, cl.Subject, cl.SessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errSessionEnded, nil
	case err != nil:
		return nil, nil, storeErr(ctx, err)
	case !sess.Active(now):
		return nil, errSessionEnded, nil
	}
	return cl, nil, nil
}

// verifySignature checks only what the token itself says — the signature
// and the claims (iss, aud, exp, ...), through the verification cache — and
// NOT whether its session is still active: a token of a session that was
// revoked, logged out or evicted passes until it expires. Use
// checkAccessToken unless the caller's own store write settles the
// session (each caller says why it may). The claims may be shared with
// other requests: read only.
func (s *Server) verifySignature(raw string, now time.Time) (*verify.Claims, error) {
	return s.verified.Verify(raw, now)
}

// introspectRefresh describes a refresh token to the client it was issued
// to: active while its session is and it is the session's current token
// (or a genuine one ahead of what the store remembers). The token just
// rotated, though it may still be retried within the reuse window, is not
// described as active: its only use is to fetch the child again.
func (s *Server) introspectRefresh(r *http.Request, c store.Client, raw string) (introspection, error) {
	rt, err := s.refresh.Verify(raw)
	if err != nil {
		return inactive, nil
	}
	sess, err := s.o.Store.Session(r.Context(), rt.UserID, rt.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return inactive, nil
	}
	if err != nil {
		return inactive, storeErr(r.Context(), err)
	}
	if pos := store.Place(sess, rt.Generation); pos != store.PositionCurrent && pos != store.PositionAhead ||
		!sess.Active(s.o.Now()) || sess.ClientID != c.ID || sess.KeyID != rt.KeyID {
		return inactive, nil
	}
	return introspection{
		Active: true, Scope: sess.Scope, ClientID: sess.ClientID, TokenType: "refresh_token",
		Exp: sess.ExpiresAt.Unix(), Iat: sess.UpdatedAt.Unix(), Sub: sess.UserID, Iss: s.o.Issuer, Sid: sess.ID,
	}, nil
}
