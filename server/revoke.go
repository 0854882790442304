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
// token (current or used) by its hash, an access token by its verified
// claims. ok is false for anything that is not a genuine token of ours.
func (s *Server) sessionOf(r *http.Request, raw string) (userID, sessionID, clientID string, ok bool, err error) {
	if strings.HasPrefix(raw, "rt_") {
		rt, perr := token.ParseRefresh(raw)
		if perr != nil {
			return "", "", "", false, nil
		}
		ti, err := s.store.TokenSession(r.Context(), rt.UserID, rt.SessionID, rt.Hash)
		if errors.Is(err, store.ErrTokenUnknown) || errors.Is(err, store.ErrNotFound) {
			return "", "", "", false, nil
		}
		if err != nil {
			return "", "", "", false, storeErr(r.Context(), err)
		}
		return rt.UserID, rt.SessionID, ti.Session.ClientID, true, nil
	}
	claims, verr := s.verified.Verify(raw, s.now())
	if verr != nil || claims.SessionID == "" {
		return "", "", "", false, nil
	}
	return claims.Subject, claims.SessionID, claims.ClientID, true, nil
}

// handleLogout is POST /logout: it ends the session of the presented
// refresh token; scope=global ends all the user's sessions, scope=others
// all but this one. 204 on success, also when the session had already
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
	scope := p["scope"]
	if scope != "" && scope != "local" && scope != "global" && scope != "others" {
		writeError(w, r, invalidRequest(`scope must be "local" (the default), "global" or "others"`))
		return
	}
	if p["refresh_token"] == "" && !strings.HasPrefix(raw, "rt_") {
		// An access token, accepted from the Bearer header only.
		s.logoutAccessToken(w, r, c, raw, scope)
		return
	}
	rt, err := token.ParseRefresh(raw)
	if err != nil {
		writeError(w, r, invalidGrant("refresh token is invalid"))
		return
	}
	ctx := r.Context()
	ti, err := s.store.TokenSession(ctx, rt.UserID, rt.SessionID, rt.Hash)
	switch {
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrNotFound):
		writeError(w, r, invalidGrant("refresh token is invalid"))
		return
	case err != nil:
		writeError(w, r, storeErr(ctx, err))
		return
	}
	if ti.Session.ClientID != c.ID {
		writeError(w, r, invalidGrant("refresh token was issued to another client"))
		return
	}
	now := s.now()
	if !ti.Session.Active(now) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent) // already ended
		return
	}
	if !ti.Current {
		// A used token: treat as theft, end this session only. A stolen old
		// token must not be able to log the user out everywhere.
		if err := s.store.RevokeSession(ctx, rt.UserID, rt.SessionID, store.ReasonReuse, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			writeError(w, r, storeErr(ctx, err))
			return
		}
		s.metrics.reuse.WithLabelValues("logout").Inc()
		s.audit(ctx, "refresh.reuse_detected", slog.String("user_id", rt.UserID), slog.String("client_id", c.ID),
			slog.String("session_id", rt.SessionID), slog.String("ip", clientIP(r)), slog.String("via", "logout"))
		writeError(w, r, invalidGrant("refresh token was already used; the session has been revoked"))
		return
	}
	n := 1
	switch scope {
	case "global":
		n, err = s.store.RevokeUserSessions(ctx, rt.UserID, "", store.ReasonLogout, now)
	case "others":
		n, err = s.store.RevokeUserSessions(ctx, rt.UserID, rt.SessionID, store.ReasonLogout, now)
	default:
		err = s.store.RevokeSession(ctx, rt.UserID, rt.SessionID, store.ReasonLogout, now)
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		writeError(w, r, storeErr(ctx, err))
		return
	}
	if scope == "" {
		scope = "local"
	}
	s.audit(ctx, "logout", slog.String("user_id", rt.UserID), slog.String("client_id", c.ID),
		slog.String("session_id", rt.SessionID), slog.String("scope", scope), slog.Int("sessions", n),
		slog.String("ip", clientIP(r)))
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
	c, err := s.store.Client(r.Context(), clientID)
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
	claims, err := s.verified.Verify(raw, s.now())
	if err != nil || claims.SessionID == "" {
		writeError(w, r, invalidGrant("token is neither a valid refresh token nor a valid access token of a session"))
		return
	}
	if claims.ClientID != c.ID {
		writeError(w, r, invalidGrant("access token was issued to another client"))
		return
	}
	err = s.store.RevokeSession(ctx, claims.Subject, claims.SessionID, store.ReasonLogout, s.now())
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
