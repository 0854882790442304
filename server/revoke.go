package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/store"
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
// know sooner use introspection). Unknown and invalid tokens get 200, as
// RFC 7009 §2.2 requires.
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
	if ok {
		if owner != c.ID {
			writeError(w, r, newError(oautherrors.ErrUnauthorizedClient, "the token was issued to another client"))
			return
		}
		err := s.store.RevokeSession(r.Context(), userID, sessionID, store.ReasonRevoked, s.now())
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

// sessionOf finds the session a presented token belongs to: a refresh
// token (any generation) once its MAC verifies, an access token by its
// verified claims. ok is false for anything that is not a genuine token of
// ours; a forged refresh token costs no store work.
func (s *Server) sessionOf(r *http.Request, raw string) (userID, sessionID, clientID string, ok bool, err error) {
	if strings.HasPrefix(raw, "rt_") {
		rt, verr := s.refresh.Verify(raw)
		if verr != nil {
			return "", "", "", false, nil
		}
		sess, err := s.store.Session(r.Context(), rt.UserID, rt.SessionID)
		if errors.Is(err, store.ErrNotFound) {
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, storeErr(r.Context(), err)
		}
		return rt.UserID, rt.SessionID, sess.ClientID, true, nil
	}
	claims, verr := s.verified.Verify(raw, s.now())
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
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	p, c, raw, err := s.clientRequest(w, r, "refresh_token")
	if err != nil {
		writeError(w, r, err)
		return
	}
	scope, ok := logoutScopes[p["scope"]]
	if !ok {
		writeError(w, r, invalidRequest(`scope must be "local" (the default), "global" or "others"`))
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
	_, err = s.store.Logout(ctx, store.Logout{
		UserID: rt.UserID, SessionID: rt.SessionID, Generation: rt.Generation, ClientID: c.ID,
		Scope: scope, Now: s.now(), ReuseWindow: s.reuseWindow,
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
