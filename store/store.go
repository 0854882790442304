// Package store defines tokend's persistent state — users, clients and
// sessions (refresh-token families) — and the Store interface that every
// backend implements. The server depends only on this package; backends live
// in store/redisstore (production) and store/memstore (embedded, for
// development), and store/storetest holds the one conformance suite both run.
package store

import (
	"context"
	"errors"
	"time"
)

// Lookup and write errors.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: already exists")
)

// Refresh outcomes. Rotate returns exactly one of these (or a transport
// error) when it does not rotate; in every such case nothing was written
// except where the comment says so.
var (
	// ErrTokenUnknown: no such session, or the presented secret never
	// belonged to it (a guess or a forgery). Nothing is revoked.
	ErrTokenUnknown = errors.New("store: refresh token unknown")
	// ErrTokenExpired: the session reached its absolute lifetime.
	ErrTokenExpired = errors.New("store: refresh token expired")
	// ErrTokenRevoked: the session was revoked earlier (logout, admin,
	// reuse detected before).
	ErrTokenRevoked = errors.New("store: refresh token revoked")
	// ErrTokenReused: the presented token was already used. The whole
	// session has been revoked by this call (theft detection).
	ErrTokenReused = errors.New("store: refresh token reused")
	// ErrClientMismatch: the session belongs to another client. Nothing is
	// revoked or rotated.
	ErrClientMismatch = errors.New("store: refresh token issued to another client")
	// ErrUserInactive: the user is disabled or deleted. The session has been
	// revoked by this call.
	ErrUserInactive = errors.New("store: user inactive")
	// ErrScopeWidened: the refresh asked for a scope the session was not
	// granted. Nothing is rotated.
	ErrScopeWidened = errors.New("store: requested scope exceeds the granted scope")
)

// Revocation reasons recorded on a session.
const (
	ReasonLogout      = "logout"
	ReasonRevoked     = "revoked" // RFC 7009 revocation or admin CLI
	ReasonReuse       = "reuse"   // a used refresh token was presented
	ReasonUserDisable = "user_disabled"
	ReasonUserDeleted = "user_deleted"
	ReasonPassword    = "password_changed" // the admin CLI set a new password
)

// User is a person who signs in with the password grant.
type User struct {
	ID           string   // opaque, token.NewID(); the `sub` of access tokens
	Username     string   // as entered; looked up case-insensitively
	PasswordHash string   // PHC-formatted argon2id hash
	Roles        []string // single words: stored space-joined
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Client is an OAuth2 client (RFC 6749 §2).
type Client struct {
	ID         string
	SecretHash []byte // SHA-256 of the generated secret; nil for public clients
	Public     bool
	Grants     []string // grant types the client may use
	Scopes     []string // scopes the client may request; empty = none
	CreatedAt  time.Time
}

// MaxUserAgent is how many bytes of a session's User-Agent a store keeps;
// the bound keeps a session record within SPEC §11's 1 KiB.
const MaxUserAgent = 256

// TruncateUserAgent cuts ua to at most MaxUserAgent bytes without splitting
// a UTF-8 character. Every store applies it in CreateSession.
func TruncateUserAgent(ua string) string {
	n := MaxUserAgent
	if len(ua) <= n {
		return ua
	}
	for n > 0 && ua[n]&0xC0 == 0x80 {
		n--
	}
	return ua[:n]
}

// Session is one refresh-token family: it starts at a password sign-in and
// ends when revoked or at ExpiresAt (absolute, never extended).
type Session struct {
	ID           string
	UserID       string
	ClientID     string
	Scope        string // space-separated scope granted at sign-in
	UserAgent    string
	IP           string
	Generation   int // number of rotations so far
	CreatedAt    time.Time
	UpdatedAt    time.Time // last rotation ("last used")
	ExpiresAt    time.Time
	RevokedAt    time.Time // zero while active
	RevokeReason string
}

// Active reports whether the session is neither revoked nor expired at now.
func (s Session) Active(now time.Time) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt)
}

// TokenHash is the SHA-256 of a refresh token's secret part. Only hashes
// are ever given to a store.
type TokenHash [32]byte

// NewSession is what CreateSession stores.
type NewSession struct {
	Session Session   // ID, UserID, ClientID, Scope, UserAgent, IP, CreatedAt, ExpiresAt
	Token   TokenHash // hash of the first refresh token
}

// Rotation asks to exchange the refresh token Presented for Next.
type Rotation struct {
	UserID    string
	SessionID string
	Presented TokenHash
	Next      TokenHash
	ClientID  string // the authenticated client; must own the session
	Scope     string // requested scope; "" means the granted scope
	Now       time.Time
}

// Rotated is the result of a successful rotation.
type Rotated struct {
	Session Session  // after rotation; Scope is the granted scope
	Scope   string   // the scope for the new access token (narrowed if asked)
	Roles   []string // the user's current roles
}

// TokenInfo says which session a refresh token belongs to.
type TokenInfo struct {
	Session Session
	Current bool // the token is the session's unused, current token
}

// Times passed to a Store ("now") must not be zero.
//
// Store is tokend's state. Implementations must be safe for concurrent use
// and must make each method atomic: in particular, of N concurrent Rotate
// calls with the same Presented hash at most one succeeds.
//
// Errors other than the sentinels above mean the store could not be
// reached or failed; callers treat them as "unavailable".
type Store interface {
	// Users.
	CreateUser(ctx context.Context, u User) error // ErrConflict if the username is taken
	User(ctx context.Context, id string) (User, error)
	UserByName(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser replaces the password hash and roles (Username, Disabled
	// and CreatedAt are ignored); ErrNotFound.
	UpdateUser(ctx context.Context, u User) error
	// SetUserDisabled disables (revoking every session) or re-enables a user.
	SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error
	// DeleteUser deletes the user and every session record it owns.
	DeleteUser(ctx context.Context, id string) error

	// Clients.
	CreateClient(ctx context.Context, c Client) error // ErrConflict
	Client(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	// UpdateClient replaces the client's secret hash, grants and scopes
	// (ID selects it; Public and CreatedAt are ignored); ErrNotFound.
	UpdateClient(ctx context.Context, c Client) error
	DeleteClient(ctx context.Context, id string) error

	// Sessions.
	// CreateSession starts a session for an existing, enabled user
	// (ErrUserInactive otherwise) and indexes it under the user.
	CreateSession(ctx context.Context, s NewSession) error
	// Rotate atomically checks and rotates a refresh token. Checks, in
	// order: the session exists and the presented hash is its current or a
	// remembered used hash (else ErrTokenUnknown — an unauthenticated token
	// never learns a session's state and never causes a write); the user
	// is active (else revoke, ErrUserInactive); not revoked; not expired;
	// the client owns the session (before reuse detection, so a client
	// cannot burn another client's sessions); a used hash revokes the
	// session (ErrTokenReused); the requested scope is a subset
	// (ErrScopeWidened); then rotate.
	Rotate(ctx context.Context, r Rotation) (Rotated, error)
	// TokenSession finds the session a refresh token (current or used)
	// belongs to, whatever its state. ErrTokenUnknown otherwise.
	TokenSession(ctx context.Context, userID, sessionID string, h TokenHash) (TokenInfo, error)
	Session(ctx context.Context, userID, sessionID string) (Session, error)
	// ListSessions returns the user's active sessions, newest first.
	ListSessions(ctx context.Context, userID string, now time.Time) ([]Session, error)
	// RevokeSession revokes one session (idempotent; ErrNotFound if absent).
	RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error
	// RevokeUserSessions revokes all the user's active sessions except
	// `except` (may be ""), and returns how many it revoked.
	RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) (int, error)

	Ping(ctx context.Context) error
	Close() error
}
