package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// sessionView is one session as GET /sessions shows it to its owner.
type sessionView struct {
	ID         string    `json:"id"`
	ClientID   string    `json:"client_id"`
	UserAgent  string    `json:"user_agent"` // the device, as its browser or app names itself
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"` // the last refresh, or the sign-in
	ExpiresAt  time.Time `json:"expires_at"`
	Current    bool      `json:"current"` // the session of the access token that asked
}

type sessionList struct {
	Sessions []sessionView `json:"sessions"`
}

// errInvalidToken is RFC 6750 §3.1's error code for a bearer token that
// is missing, malformed, expired or revoked.
var errInvalidToken = errors.New("invalid_token")

// bearerError is the RFC 6750 §3 answer: 401, with a WWW-Authenticate
// challenge that names the error (none when no token was presented at
// all, §3.1) and, when the only problem is expiry, Token-Expired: true —
// the header resource servers using package verify send too.
func bearerError(desc string, presented, expired bool) *oauthError {
	e := newError(errInvalidToken, desc)
	e.status = http.StatusUnauthorized
	challenge := `Bearer realm="tokend"`
	if presented {
		challenge += `, error="invalid_token", error_description="` + desc + `"`
	}
	e.header = http.Header{"Www-Authenticate": {challenge}}
	if expired {
		e.header.Set("Token-Expired", "true")
	}
	return e
}

// signedInUser authenticates the request's bearer access token
// (RFC 6750 §2.1) with checkAccessToken, the check introspection makes,
// and requires a user's token: one with a session, whose session is
// active.
func (s *Server) signedInUser(r *http.Request) (*verify.Claims, error) {
	scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return nil, bearerError("an access token is required (Authorization: Bearer)", false, false)
	}
	cl, why, err := s.checkAccessToken(r.Context(), strings.TrimSpace(raw))
	switch {
	case err != nil:
		return nil, err
	case errors.Is(why, token.ErrExpired):
		return nil, bearerError("the access token has expired", true, true)
	case errors.Is(why, errSessionEnded):
		return nil, bearerError("the session of the access token has ended", true, false)
	case why != nil:
		return nil, bearerError("the access token is invalid", true, false)
	case cl.SessionID == "":
		// A client_credentials token speaks for a client, which has no
		// sessions.
		return nil, bearerError("the access token is not a user's (it has no session)", true, false)
	}
	return cl, nil
}

// handleListSessions is GET /sessions: the signed-in user's active
// sessions, newest first, the caller's own marked current.
func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request) {
	cl, err := s.signedInUser(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sessions, err := s.o.Store.ListSessions(r.Context(), cl.Subject, s.o.Now())
	if err != nil {
		writeError(w, r, storeErr(r.Context(), err))
		return
	}
	out := sessionList{Sessions: make([]sessionView, 0, len(sessions))}
	for _, x := range sessions {
		out.Sessions = append(out.Sessions, sessionView{
			ID: x.ID, ClientID: x.ClientID, UserAgent: x.UserAgent, IP: x.IP,
			CreatedAt: x.CreatedAt.UTC(), LastUsedAt: x.UpdatedAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(),
			Current: x.ID == cl.SessionID,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// errNoSuchSession is the one answer for a session id that is not one of
// the caller's active sessions — someone else's, ended, or made up — so
// the endpoint reveals nothing about other users' sessions.
var errNoSuchSession = func() *oauthError {
	e := newError(errNotFound, "no such session")
	e.status = http.StatusNotFound
	return e
}

// handleDeleteSession is DELETE /sessions/{id}: the signed-in user ends
// one of their active sessions (their own current one included, which is
// a logout). 204, or 404 for anything that is not one of their active
// sessions. Sessions live under their user in the store, so another
// user's session id is simply not found.
func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	cl, err := s.signedInUser(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ctx, id, now := r.Context(), r.PathValue("id"), s.o.Now()
	if !token.ValidID(id) {
		writeError(w, r, errNoSuchSession())
		return
	}
	sess, err := s.o.Store.Session(ctx, cl.Subject, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, r, errNoSuchSession())
		return
	case err != nil:
		writeError(w, r, storeErr(ctx, err))
		return
	case !sess.Active(now) || sess.UserID != cl.Subject:
		writeError(w, r, errNoSuchSession())
		return
	}
	err = s.o.Store.RevokeSession(ctx, cl.Subject, id, store.ReasonLogout, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, r, errNoSuchSession())
		return
	case err != nil:
		writeError(w, r, storeErr(ctx, err))
		return
	}
	s.audit(ctx, "session.revoked", slog.String("user_id", cl.Subject), slog.String("client_id", sess.ClientID),
		slog.String("session_id", id), slog.String("by_session", cl.SessionID), slog.String("via", "sessions"),
		slog.String("ip", clientIP(r)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
