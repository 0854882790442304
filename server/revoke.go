package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// clientRequest reads an OAuth request body, authenticates its client and
// returns the required token parameter named tokenParam.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request, tokenParam string) (params, store.Client, string, error) {
	p, err := readParams(w, r)
	if err != nil {
		return nil, store.Client{}, "", err
	}
	c, err := s.authenticateClient(r, p)
	if err != nil {
		return nil, store.Client{}, "", err
	}
	raw, err := p.require(tokenParam)
	return p, c, raw, err
}

// handleRevoke is POST /oauth/revoke (RFC 7009). A refresh token revokes
// its whole session; an access token revokes the session it belongs to
// (the JWT itself stays valid until it expires — resource servers that must
// know sooner use introspection or the revocation feed). Unknown and
// invalid tokens get 200, as RFC 7009 §2.2 requires. A client's own access
// token (client_credentials) belongs to no session, and tokend keeps no
// list of single revoked tokens: it gets unsupported_token_type (RFC 7009
// §2.2.1) rather than a 200 that would change nothing — the client ends
// all its tokens by having its secret rotated (docs/security.md).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	_, c, raw, err := s.clientRequest(w, r, "token")
	if err != nil {
		writeError(w, r, err)
		return
	}
	userID, sessionID, owner, ok, err := s.sessionOf(r, raw)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !ok && !strings.HasPrefix(raw, "rt_") {
		// The signature alone (verifySignature): whether the client has
		// ended it or not, such a token is not revoked here.
		if cl, verr := s.verifySignature(raw, s.o.Now()); verr == nil && cl.SessionID == "" {
			if cl.ClientID != c.ID {
				writeError(w, r, newError(oautherrors.ErrUnauthorizedClient, "the token was issued to another client"))
				return
			}
			writeError(w, r, newError(errUnsupportedTokenType, "a client_credentials access token cannot be revoked by itself: "+
				"it expires on its own, and rotating the client's secret (tokend clients rotate-secret) ends all of them at once"))
			return
		}
	}
	if ok {
		if owner != c.ID {
			writeError(w, r, newError(oautherrors.ErrUnauthorizedClient, "the token was issued to another client"))
			return
		}
		err := s.o.Store.RevokeSession(r.Context(), userID, sessionID, store.ReasonRevoked, s.o.Now())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			writeError(w, r, storeErr(r.Context(), err))
			return
		}
		s.audit(r.Context(), "revoke", slog.String("user_id", userID), slog.String("client_id", c.ID),
			slog.String("session_id", sessionID), slog.String("ip", clientIP(r)))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// errUnsupportedTokenType is RFC 7009 §2.2.1's error code: the server does
// not revoke this kind of token.
var errUnsupportedTokenType = errors.New("unsupported_token_type")

// sessionOf finds the session a presented token belongs to: a refresh
// token (any generation) once its MAC verifies, an access token by its
// verified claims. ok is false for anything that is not a genuine token of
// ours; a forged refresh token costs no store work.
//
// An access token needs only verifySignature here, not checkAccessToken:
// its callers (revocation, and logout finding the client) end the session
// it names, and ending a session that has already ended is a no-op the
// store answers as such, with the same response to the client (RFC 7009
// §2.2: 200; logout: 204), so checking first would cost a store read and
// decide nothing.
func (s *Server) sessionOf(r *http.Request, raw string) (userID, sessionID, clientID string, ok bool, err error) {
	if strings.HasPrefix(raw, token.RefreshPrefix) {
		rt, verr := s.refresh.Verify(raw)
		if verr != nil {
			return "", "", "", false, nil
		}
		sess, err := s.o.Store.Session(r.Context(), rt.UserID, rt.SessionID)
		if errors.Is(err, store.ErrNotFound) || err == nil && sess.KeyID != rt.KeyID { // another key's token is none of the session's
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, storeErr(r.Context(), err)
		}
		return rt.UserID, rt.SessionID, sess.ClientID, true, nil
	}
	claims, verr := s.verifySignature(raw, s.o.Now())
	if verr != nil || claims.SessionID == "" {
		return "", "", "", false, nil
	}
	return claims.Subject, claims.SessionID, claims.ClientID, true, nil
}

// logoutScopes are the values of /logout's scope parameter.
var logoutScopes = map[string]store.LogoutScope{
	"": store.LogoutLocal, "local": store.LogoutLocal, "global": store.LogoutGlobal, "others": store.LogoutOthers,
}

// handleLogout is POST /logout: it ends the session of the presented
// refresh token; scope=global ends all the user's sessions, scope=others
// all but this one. One atomic store call classifies the token as a
// refresh would (store.Logout): the current token, or the one just
// rotated within REFRESH_REUSE_WINDOW, logs out; an older token is theft
// and ends only its own session — a stolen old token never logs a user
// out everywhere. 204 on success, also when the session had already
// ended.
//
// The refresh token may also come as "Authorization: Bearer <refresh
// token>", and "Authorization: Bearer <access token>" ends the access
// token's session (scope local only); see logoutRequest.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	p, c, raw, err := s.logoutRequest(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	scope, ok := logoutScopes[p["scope"]]
	if !ok {
		writeError(w, r, invalidRequest(`scope must be "local" (the default), "global" or "others"`))
		return
	}
	if p["refresh_token"] == "" && !strings.HasPrefix(raw, token.RefreshPrefix) {
		// An access token, accepted from the Bearer header only.
		s.logoutAccessToken(w, r, c, raw, p["scope"])
		return
	}
	rt, err := s.refresh.Verify(raw)
	if err != nil {
		writeError(w, r, invalidGrant("refresh token is invalid"))
		return
	}
	ctx := r.Context()
	who := []slog.Attr{slog.String("user_id", rt.UserID), slog.String("client_id", c.ID),
		slog.String("session_id", rt.SessionID), slog.Uint64("presented_generation", rt.Generation),
		slog.String("ip", clientIP(r))}
	_, err = s.o.Store.Logout(ctx, store.Logout{
		Presentation: store.Presentation{
			UserID: rt.UserID, SessionID: rt.SessionID, Generation: rt.Generation, KeyID: rt.KeyID, ClientID: c.ID,
			Now: s.o.Now(), ReuseWindow: s.o.ReuseWindow,
		},
		Scope: scope,
	})
	var reuse *store.ReuseError
	switch {
	case err == nil:
		name := p["scope"]
		if name == "" {
			name = "local"
		}
		s.audit(ctx, "logout", append(who, slog.String("scope", name))...)
	case errors.As(err, &reuse):
		s.reuseDetected(ctx, "logout", reuse.Cause, who)
		writeError(w, r, invalidGrant("refresh token was already used; the session has been revoked"))
		return
	case errors.Is(err, store.ErrTokenUnknown):
		writeError(w, r, invalidGrant("refresh token is invalid"))
		return
	case errors.Is(err, store.ErrClientMismatch):
		writeError(w, r, invalidGrant("refresh token was issued to another client"))
		return
	case errors.Is(err, store.ErrTokenRevoked), errors.Is(err, store.ErrTokenExpired), errors.Is(err, store.ErrUserInactive):
		// Already ended.
	default:
		writeError(w, r, storeErr(ctx, err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// logoutRequest reads a /logout request: the token is the refresh_token
// parameter or, failing that, the "Authorization: Bearer" token (a refresh
// token or an access token). A request that authenticates no client is
// accepted for a token of a public client (whose client_id proves nothing
// anyway); a confidential client's token still needs the client's
// credentials.
func (s *Server) logoutRequest(w http.ResponseWriter, r *http.Request) (params, store.Client, string, error) {
	p, err := readParams(w, r)
	if err != nil {
		return nil, store.Client{}, "", err
	}
	raw := p["refresh_token"]
	if raw == "" {
		raw = bearerToken(r)
	}
	c, err := s.authenticateClient(r, p)
	if errors.Is(err, errNoClient) && raw != "" {
		c, err = s.tokenClient(r, raw)
	}
	if err != nil {
		return nil, store.Client{}, "", err
	}
	if raw == "" {
		return nil, store.Client{}, "", invalidRequest(`missing parameter "refresh_token" (or an Authorization: Bearer token)`)
	}
	return p, c, raw, nil
}

// tokenClient is the public client a presented token was issued to, for a
// logout that names no client. An invalid token, or one of a confidential
// client, gets the invalid_client answer of a request without client
// authentication.
func (s *Server) tokenClient(r *http.Request, raw string) (store.Client, error) {
	_, _, clientID, ok, err := s.sessionOf(r, raw)
	if err != nil {
		return store.Client{}, err
	}
	if !ok {
		return store.Client{}, errNoClient
	}
	c, err := s.o.Store.Client(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !c.Public) {
		return store.Client{}, errNoClient
	}
	if err != nil {
		return store.Client{}, storeErr(r.Context(), err)
	}
	return c, nil
}

// logoutAccessToken ends the session of a valid access token of client c.
// Only scope local: ending every session of the user takes the refresh
// token, which, unlike an access token, is never shown to resource servers.
func (s *Server) logoutAccessToken(w http.ResponseWriter, r *http.Request, c store.Client, raw, scope string) {
	ctx := r.Context()
	if scope != "" && scope != "local" {
		writeError(w, r, invalidRequest("scope="+scope+" needs the refresh token; an access token ends only its own session"))
		return
	}
	// The signature suffices (see sessionOf): an ended session is
	// "already logged out", 204 like a live one.
	claims, err := s.verifySignature(raw, s.o.Now())
	if err != nil || claims.SessionID == "" {
		writeError(w, r, invalidGrant("token is neither a valid refresh token nor a valid access token of a session"))
		return
	}
	if claims.ClientID != c.ID {
		writeError(w, r, invalidGrant("access token was issued to another client"))
		return
	}
	err = s.o.Store.RevokeSession(ctx, claims.Subject, claims.SessionID, store.ReasonLogout, s.o.Now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		writeError(w, r, storeErr(ctx, err))
		return
	}
	s.audit(ctx, "logout", slog.String("user_id", claims.Subject), slog.String("client_id", c.ID),
		slog.String("session_id", claims.SessionID), slog.String("scope", "local"), slog.Int("sessions", 1),
		slog.String("ip", clientIP(r)), slog.String("via", "access_token"))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
