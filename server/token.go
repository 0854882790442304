package server

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// handleToken is POST /oauth/token (RFC 6749 §4.3, §4.4, §6).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	var grant string
	var err error
	defer func() { s.metrics.observeGrant(r.Context(), grant, err) }()
	p, err := readParams(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	grant, err = p.require("grant_type")
	if err != nil {
		writeError(w, r, err)
		return
	}
	var resp tokenResponse
	switch oauth2.GrantType(grant) {
	case oauth2.PasswordCredentials:
		resp, err = s.passwordGrant(r, p)
	case oauth2.Refreshing:
		resp, err = s.refreshGrant(r, p)
	case oauth2.ClientCredentials:
		resp, err = s.clientCredentialsGrant(r, p)
	default:
		err = newError(oautherrors.ErrUnsupportedGrantType, "grant_type must be password, refresh_token or client_credentials")
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeToken(w, resp)
}

// authenticateClient checks the presented client credentials. It runs
// before any user credential is looked at (docs/security.md, "Password guessing": no password oracle).
func (s *Server) authenticateClient(r *http.Request, p params) (store.Client, error) {
	cc, err := presentedClient(r, p)
	if err != nil {
		return store.Client{}, err
	}
	c, err := s.o.Store.Client(r.Context(), cc.id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, invalidClient("unknown client or wrong client secret")
	}
	if err != nil {
		return store.Client{}, storeErr(r.Context(), err)
	}
	if c.Public {
		if cc.secret != "" {
			return store.Client{}, invalidClient("a public client must not send a client secret")
		}
		return c, nil
	}
	if cc.secret == "" {
		return store.Client{}, invalidClient("client secret required for a confidential client")
	}
	if !credential.VerifyClientSecret(cc.secret, c.SecretHash) {
		return store.Client{}, invalidClient("unknown client or wrong client secret")
	}
	return c, nil
}

// clientFor authenticates the client and checks it may use the grant.
func (s *Server) clientFor(r *http.Request, p params, grant oauth2.GrantType) (store.Client, error) {
	c, err := s.authenticateClient(r, p)
	if err != nil {
		return c, err
	}
	if !slices.Contains(c.Grants, grant.String()) {
		return c, newError(oautherrors.ErrUnauthorizedClient, "this client may not use the "+grant.String()+" grant")
	}
	return c, nil
}

// resolveScope checks a requested scope against what the client may ask
// for. An empty request means everything the client may ask for.
func resolveScope(requested string, allowed []string) (string, error) {
	if requested == "" {
		return strings.Join(allowed, " "), nil
	}
	if validScopeToken(requested) && slices.Contains(allowed, requested) {
		return requested, nil // one scope, the usual request: nothing to split or join
	}
	var out []string
	for _, sc := range strings.Fields(requested) {
		if !validScopeToken(sc) {
			return "", newError(oautherrors.ErrInvalidScope, "scope contains invalid characters")
		}
		if !slices.Contains(allowed, sc) {
			return "", newError(oautherrors.ErrInvalidScope, "scope "+quoteParam(sc)+" is not allowed for this client")
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return strings.Join(out, " "), nil
}

// validScopeToken: RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return s != ""
}

func (s *Server) passwordGrant(r *http.Request, p params) (tokenResponse, error) {
	ctx := r.Context()
	c, err := s.clientFor(r, p, oauth2.PasswordCredentials)
	if err != nil {
		return tokenResponse{}, err
	}
	raw, err := p.require("username")
	if err != nil {
		return tokenResponse{}, err
	}
	username := signinName(raw)
	password, err := p.require("password")
	if err != nil {
		return tokenResponse{}, err
	}
	scope, err := resolveScope(p["scope"], c.Scopes)
	if err != nil {
		return tokenResponse{}, err
	}
	// Brute-force protection: after the client is authenticated, before
	// any password work.
	if err := s.limitLogin(r, c, username); err != nil {
		return tokenResponse{}, err
	}
	u, err := s.checkPassword(ctx, username, password)
	if err != nil {
		if e := (*oauthError)(nil); errors.As(err, &e) && e.code == oautherrors.ErrInvalidGrant {
			s.audit(ctx, "signin.failure", append(accountAttrs(u),
				slog.String("client_id", c.ID), slog.String("ip", clientIP(r)), slog.String("reason", e.desc))...)
		}
		return tokenResponse{}, err
	}
	s.loginSucceeded(ctx, username, clientIP(r))

	now := s.o.Now()
	sid := token.NewID()
	// The token first: a missing refresh key must not leave a session behind.
	rt, minted, err := s.refresh.Mint(u.ID, sid, 0)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	evicted, err := s.o.Store.CreateSession(ctx, store.NewSession{
		Session: store.Session{
			ID: sid, UserID: u.ID, ClientID: c.ID, KeyID: minted.KeyID, Scope: scope, UserAgent: r.UserAgent(), IP: clientIP(r),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(s.o.RefreshTTL),
		},
		Max: s.o.MaxSessions,
	})
	switch {
	case errors.Is(err, store.ErrUserInactive), errors.Is(err, store.ErrNotFound):
		return tokenResponse{}, invalidGrant("user account is disabled")
	case err != nil:
		return tokenResponse{}, storeErr(ctx, err)
	}
	for _, id := range evicted {
		s.audit(ctx, "session.revoked", slog.String("user_id", u.ID), slog.String("session_id", id),
			slog.String("reason", store.ReasonEvicted))
	}
	at, err := s.o.Tokens.Issue(token.Claims{Subject: u.ID, ClientID: c.ID, Scope: scope, SessionID: sid, Roles: u.Roles}, now)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	s.audit(ctx, "signin.success", slog.String("user_id", u.ID), slog.String("client_id", c.ID),
		slog.String("session_id", sid), slog.String("ip", clientIP(r)))
	return tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.o.Tokens.TTL().Seconds()),
		RefreshToken: rt, Scope: scope,
	}, nil
}

// invalidUsername stands for every submitted name that is not a valid
// username (credential.Username): such a name cannot exist, so it is
// looked up (and rate-limited) as this one unknown name, never stored or
// logged. The space keeps it apart from every canonical name.
const invalidUsername = " invalid username"

// signinName is the canonical form of a submitted username, so that
// "ALICE" and "ａｌｉｃｅ" are alice for the lookup and the per-account rate
// limit, or invalidUsername.
func signinName(raw string) string {
	name, err := credential.Username(raw)
	if err != nil {
		return invalidUsername
	}
	return name
}

// accountAttrs names the account of a password attempt on an audit line:
// the user id and stored username of an account that exists (u.ID set),
// else account_known=false and nothing of what was typed — a name that
// matches no account may be a password typed into the username field.
func accountAttrs(u store.User) []slog.Attr {
	if u.ID == "" {
		return []slog.Attr{slog.Bool("account_known", false)}
	}
	return []slog.Attr{slog.String("user_id", u.ID), slog.String("username", u.Username)}
}

// errBadCredentials is the one answer for an unknown user and a wrong
// password, so the endpoint does not reveal which usernames exist.
var errBadCredentials = invalidGrant("invalid username or password")

// checkPassword finds the user and verifies the password, spending the
// same argon2id work whether or not the user exists. On a wrong password
// it returns the user too (for the audit line; see accountAttrs).
func (s *Server) checkPassword(ctx context.Context, username, password string) (store.User, error) {
	u, err := s.o.Store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		s.o.Passwords.VerifyDummy(ctx, password)
		return store.User{}, errBadCredentials
	}
	if err != nil {
		return store.User{}, storeErr(ctx, err)
	}
	ok, err := s.o.Passwords.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		if ctx.Err() != nil {
			return store.User{}, ctx.Err()
		}
		return store.User{}, serverError(err)
	}
	if !ok {
		return u, errBadCredentials
	}
	if u.Disabled {
		return u, invalidGrant("user account is disabled")
	}
	return u, nil
}

// refreshGrant rotates a refresh token (RFC 6749 §6; docs/design.md,
// "Sessions and rotation"). The token's MAC is checked first, before the
// client is looked up or anything else touches the store, so a forged or
// mistyped token costs one HMAC. Then one atomic store call applies the
// rotation rule, and the answer carries the child token derived from the
// generation the store decided: a retry within REFRESH_REUSE_WINDOW gets
// the byte-identical refresh token the first answer carried (and a fresh
// access token).
func (s *Server) refreshGrant(r *http.Request, p params) (tokenResponse, error) {
	ctx := r.Context()
	raw, err := p.require("refresh_token")
	if err != nil {
		return tokenResponse{}, err
	}
	rt, err := s.refresh.Verify(raw)
	if err != nil {
		return tokenResponse{}, s.refreshInvalid(r, raw)
	}
	c, err := s.clientFor(r, p, oauth2.Refreshing)
	if err != nil {
		return tokenResponse{}, err
	}
	requested := p["scope"]
	for _, sc := range strings.Fields(requested) {
		if !validScopeToken(sc) {
			return tokenResponse{}, newError(oautherrors.ErrInvalidScope, "scope contains invalid characters")
		}
	}
	now := s.o.Now()
	rot, err := s.o.Store.Rotate(ctx, store.Rotation{
		Presentation: store.Presentation{
			UserID: rt.UserID, SessionID: rt.SessionID, Generation: rt.Generation, KeyID: rt.KeyID,
			ClientID: c.ID, Now: now, ReuseWindow: s.o.ReuseWindow, RequestID: newStoreRequestID(),
		},
		Scope: strings.Join(strings.Fields(requested), " "),
	})
	if err != nil {
		return tokenResponse{}, s.refreshFailed(r, c, rt, err)
	}
	child, err := s.refresh.Derive(rt, rot.Session.Generation)
	if err != nil { // the session's key vanished since Verify: nothing to hand out
		return tokenResponse{}, serverError(err)
	}
	at, err := s.o.Tokens.Issue(token.Claims{
		Subject: rt.UserID, ClientID: c.ID, Scope: rot.Scope, SessionID: rt.SessionID, Roles: rot.Roles,
	}, now)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	s.metrics.rotations.WithLabelValues(rot.Outcome.String()).Inc()
	event := "refresh"
	switch rot.Outcome {
	case store.OutcomeRetried:
		event = "refresh.retry"
	case store.OutcomeRecovered:
		event = "refresh.recovered"
	}
	s.audit(ctx, event, slog.String("user_id", rt.UserID), slog.String("client_id", c.ID),
		slog.String("session_id", rt.SessionID), slog.Uint64("presented_generation", rt.Generation),
		slog.Uint64("generation", rot.Session.Generation), slog.String("ip", clientIP(r)))
	return tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.o.Tokens.TTL().Seconds()),
		RefreshToken: child, Scope: rot.Scope,
	}, nil
}

// newStoreRequestID is the random id a rotation records (store.RequestID):
// the server's own, never a caller's X-Request-Id, so that nobody can
// present the id of another request and be answered as its replay.
func newStoreRequestID() store.RequestID {
	var id store.RequestID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return id
}

// refreshInvalid answers a refresh token that is malformed or whose MAC
// does not verify (audit refresh.invalid: a forgery, a corrupted token, a
// token of a refresh key since removed, or a client bug). It is answered
// before the client is authenticated and before any store work, so the
// audit line names no client; the ids and key a well-formed token claims
// are logged as claimed, and nothing else of it is.
func (s *Server) refreshInvalid(r *http.Request, raw string) error {
	attrs := []slog.Attr{slog.String("ip", clientIP(r)), slog.String("reason", "malformed")}
	if claimed, err := token.ParseRefresh(raw); err == nil {
		attrs[1] = slog.String("reason", "not_genuine")
		attrs = append(attrs, slog.String("claimed_user_id", claimed.UserID), slog.String("claimed_session_id", claimed.SessionID),
			slog.String("key_id", claimed.KeyID))
	}
	s.audit(r.Context(), "refresh.invalid", attrs...)
	return invalidGrant("refresh token is invalid")
}

// refreshFailed turns a Rotate error into the RFC answer, auditing theft
// (refresh.reuse_detected, with its cause) and every other refused refresh
// (refresh.failure, with the reason).
func (s *Server) refreshFailed(r *http.Request, c store.Client, rt token.Refresh, err error) error {
	ctx := r.Context()
	who := []slog.Attr{slog.String("user_id", rt.UserID), slog.String("client_id", c.ID),
		slog.String("session_id", rt.SessionID), slog.Uint64("presented_generation", rt.Generation),
		slog.String("ip", clientIP(r))}
	failed := func(e *oauthError) error {
		s.audit(ctx, "refresh.failure", append(who, slog.String("reason", e.desc))...)
		return e
	}
	var reuse *store.ReuseError
	switch {
	case errors.As(err, &reuse):
		s.reuseDetected(ctx, "refresh", reuse.Cause, who)
		return invalidGrant("refresh token was already used; the session has been revoked")
	case errors.Is(err, store.ErrTokenReused): // a store without a cause
		s.reuseDetected(ctx, "refresh", "unknown", who)
		return invalidGrant("refresh token was already used; the session has been revoked")
	case errors.Is(err, store.ErrTokenUnknown):
		return failed(invalidGrant("refresh token is invalid"))
	case errors.Is(err, store.ErrTokenExpired):
		return failed(invalidGrant("refresh token has expired"))
	case errors.Is(err, store.ErrTokenRevoked):
		return failed(invalidGrant("refresh token has been revoked"))
	case errors.Is(err, store.ErrClientMismatch):
		return failed(invalidGrant("refresh token was issued to another client"))
	case errors.Is(err, store.ErrUserInactive):
		s.audit(ctx, "session.revoked", append(who, slog.String("reason", "user inactive"))...)
		return invalidGrant("user account is disabled or deleted")
	case errors.Is(err, store.ErrScopeWidened):
		return failed(newError(oautherrors.ErrInvalidScope, "requested scope exceeds the scope originally granted"))
	default:
		return storeErr(ctx, err)
	}
}

// reuseDetected counts and audits theft detected with a refresh token (via
// "refresh" or "logout"; cause store.CauseWindowExpired or
// store.CauseChildUsed).
func (s *Server) reuseDetected(ctx context.Context, via, cause string, who []slog.Attr) {
	s.metrics.reuse.WithLabelValues(via, cause).Inc()
	s.audit(ctx, "refresh.reuse_detected", append(who, slog.String("via", via), slog.String("cause", cause))...)
}

func (s *Server) clientCredentialsGrant(r *http.Request, p params) (tokenResponse, error) {
	c, err := s.clientFor(r, p, oauth2.ClientCredentials)
	if err != nil {
		return tokenResponse{}, err
	}
	if c.Public {
		return tokenResponse{}, newError(oautherrors.ErrUnauthorizedClient, "a public client may not use the client_credentials grant")
	}
	scope, err := resolveScope(p["scope"], c.Scopes)
	if err != nil {
		return tokenResponse{}, err
	}
	now, err := s.afterTokensNotBefore(r.Context(), c)
	if err != nil {
		return tokenResponse{}, err
	}
	at, err := s.o.Tokens.Issue(token.Claims{Subject: c.ID, ClientID: c.ID, Scope: scope}, now)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	return tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.o.Tokens.TTL().Seconds()), Scope: scope}, nil
}

// afterTokensNotBefore is the issue time of a client_credentials token of
// c: now, or — in the second of c.TokensNotBefore, right after a change
// ended the client's tokens — the start of the next second, after waiting
// for it. An access token's iat is whole seconds, and every check
// (store.Client.TokenEnded, verify's) ends the tokens issued in that
// second, so a token issued then would be born ended. The wait is at most
// a second; should this host's clock be further behind the one that set
// TokensNotBefore, the token's iat is that far ahead (within the
// verifiers' leeway for a skew NTP keeps small).
func (s *Server) afterTokensNotBefore(ctx context.Context, c store.Client) (time.Time, error) {
	now := s.o.Now()
	if !c.TokenEnded(now.Truncate(time.Second)) {
		return now, nil
	}
	first := c.TokensNotBefore.Truncate(time.Second).Add(time.Second)
	t := time.NewTimer(min(first.Sub(now), time.Second))
	defer t.Stop()
	select {
	case <-t.C:
		return first, nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}
