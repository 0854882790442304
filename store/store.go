// Package store defines tokend's persistent state — users, clients and
// sessions (refresh-token families) — and the Store interface that every
// backend implements. The server depends only on this package; backends live
// in store/redisstore (production) and store/memstore (embedded, for
// development), and store/storetest holds the one conformance suite both run.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Lookup and write errors.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: already exists")
	// ErrLookAlike is the ErrConflict of CreateUser for a username with
	// the skeleton (credential.Skeleton) of another user's name: "асе" in
	// Cyrillic beside "ace". errors.Is(err, ErrConflict) holds for it.
	ErrLookAlike = fmt.Errorf("%w: the username looks like an existing user's", ErrConflict)
)

// Refusals of Rotate and Logout (see Decide for when each applies). In
// every case nothing was written except where the comment says so.
// Forged tokens never reach a store: the server verifies a refresh
// token's MAC first.
var (
	// ErrTokenUnknown: no such session (never existed, deleted, or its
	// record expired). Nothing is written.
	ErrTokenUnknown = errors.New("store: refresh token unknown")
	// ErrTokenExpired: the session reached its absolute lifetime.
	ErrTokenExpired = errors.New("store: refresh token expired")
	// ErrTokenRevoked: the session was revoked earlier (logout, admin,
	// reuse detected before, evicted by the cap) or ended by its user's
	// SessionsEnded.
	ErrTokenRevoked = errors.New("store: refresh token revoked")
	// ErrTokenReused: an earlier token of the session was presented
	// outside the rules for retries. The whole session has been revoked by
	// this call (theft detection). Returned as a *ReuseError.
	ErrTokenReused = errors.New("store: refresh token reused")
	// ErrClientMismatch: the session belongs to another client. Nothing is
	// revoked or rotated.
	ErrClientMismatch = errors.New("store: refresh token issued to another client")
	// ErrUserInactive: the user is disabled or deleted. The session has been
	// revoked by this call.
	ErrUserInactive = errors.New("store: user inactive")
	// ErrScopeWidened: the refresh asked for a scope the session was not
	// granted. Nothing is rotated (a proof presented is recorded: row 7).
	ErrScopeWidened = errors.New("store: requested scope exceeds the granted scope")
	// ErrProofRequired: the session is bound to a DPoP key (Session.JKT)
	// and the presentation carries no proof. Nothing is written.
	ErrProofRequired = errors.New("store: the session is bound to a DPoP key; a proof is required")
	// ErrProofKeyMismatch: the session is bound to another DPoP key than
	// the proof's. Nothing is written: the session goes on (anyone who
	// saw the token could otherwise end it).
	ErrProofKeyMismatch = errors.New("store: the DPoP proof is not by the session's key")
	// ErrProofReplayed: the proof's replay id was recorded before, by
	// another request (a resend of the same request, with the same
	// RequestID, is not a replay). Nothing is written.
	ErrProofReplayed = errors.New("store: DPoP proof replayed")
)

// Revocation reasons recorded on a session.
const (
	ReasonLogout      = "logout"
	ReasonRevoked     = "revoked" // RFC 7009 revocation or admin CLI
	ReasonReuse       = "reuse"   // a used refresh token was presented
	ReasonUserDisable = "user_disabled"
	ReasonUserDeleted = "user_deleted"
	ReasonEvicted     = "evicted"          // ended by the per-user session cap
	ReasonPassword    = "password_changed" // the admin CLI set a new password
)

// User is a person who signs in with the password grant.
type User struct {
	ID           string   // opaque, token.NewID(); the `sub` of access tokens
	Username     string   // as entered; looked up case-insensitively
	PasswordHash string   // PHC-formatted argon2id hash
	Roles        []string // each a credential.Role, none twice; stored space-joined
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// LastSignIn is the creation time of the user's latest session, set
	// by CreateSession in the same atomic step (zero before the first);
	// CreateUser and UpdateUser ignore it.
	LastSignIn time.Time
	// SessionsEnded ends, lazily, every session created at or before it
	// except SessionsExempt: "log out everywhere" (no exempt), "log out
	// others" (the caller's session exempt), disabling. Setting it is one
	// write whatever the number of sessions (docs/design.md, "Sessions and
	// rotation"); stores apply it wherever they read a session. Only
	// RevokeUserSessions, Logout and SetUserDisabled set it; CreateUser
	// and UpdateUser ignore these three fields.
	SessionsEnded     time.Time
	SessionsExempt    string
	SessionsEndReason string
}

// Client is an OAuth2 client (RFC 6749 §2).
type Client struct {
	ID         string
	SecretHash []byte // SHA-256 of the generated secret; nil for public clients
	Public     bool
	Grants     []string // grant types the client may use
	Scopes     []string // scopes the client may request; empty = none
	// Audiences are the resource servers the client may ask tokens for
	// (RFC 8707 `resource`); empty = the deployment's default audience.
	Audiences []string
	// RequireDPoP refuses the client's token requests that carry no DPoP
	// proof (RFC 9449 §5.2, dpop_bound_access_tokens).
	RequireDPoP bool
	CreatedAt   time.Time
	// TokensNotBefore ends the access tokens the client got with the
	// client_credentials grant at or before it (TokenEnded): set when a
	// change takes something away from the client (Narrows) — a rotated
	// secret, a scope or grant removed. Zero: none ended.
	TokensNotBefore time.Time
}

// Narrows reports whether c, replacing old, takes something away from the
// client: another secret, a grant, scope or audience old had, or DPoP
// newly required (its earlier bearer tokens are what that refuses).
// ReplaceClient then
// sets TokensNotBefore (docs/security.md, "A malicious or compromised
// client").
func Narrows(old, c Client) bool {
	if string(old.SecretHash) != string(c.SecretHash) {
		return true
	}
	for _, g := range old.Grants {
		if !slices.Contains(c.Grants, g) {
			return true
		}
	}
	for _, sc := range old.Scopes {
		if !slices.Contains(c.Scopes, sc) {
			return true
		}
	}
	for _, a := range old.Audiences {
		if !slices.Contains(c.Audiences, a) {
			return true
		}
	}
	return c.RequireDPoP && !old.RequireDPoP
}

// ReplaceClient stores c, the new version of old, in st: when the change
// takes something away from the client (Narrows) it first sets
// c.TokensNotBefore = now, ending the access tokens the client got with
// client_credentials until now. Every caller that changes a client (the
// CLI, the admin API) goes through it.
func ReplaceClient(ctx context.Context, st Store, old, c Client, now time.Time) error {
	if Narrows(old, c) {
		c.TokensNotBefore = now
	}
	return st.UpdateClient(ctx, c)
}

// TokenEnded reports whether TokensNotBefore ends the client's
// client_credentials access token issued at iat: issued at or before it.
// iat is whole seconds; the client_credentials grant issues no token in
// the second of TokensNotBefore, so no token issued after a change is
// caught. verify applies the same rule to the client-updated events of
// the revocation feed.
func (c Client) TokenEnded(iat time.Time) bool {
	return !c.TokensNotBefore.IsZero() && !iat.After(c.TokensNotBefore)
}

// MaxUserAgent is how many bytes of a session's User-Agent a store keeps;
// the bound keeps a session within the 1 KiB budget of docs/performance.md.
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

// MaxGeneration bounds the generations a store accepts: a presentation
// of generation MaxGeneration or more is ErrTokenUnknown (rule row 1).
// Redis's Lua numbers are exact up to 2^53, and a genuine token never
// comes near it (the server mints generation g+1 only after the store
// reached g).
const MaxGeneration = 1 << 53

// DefaultMaxSessions is the per-user session cap when NewSession.Max is 0
// (the default of MAX_SESSIONS_PER_USER).
const DefaultMaxSessions = 100

// TombstoneGrace is how long a session record outlives its absolute
// expiry, so that an ended session is reported as revoked or expired
// rather than unknown for a while. Both backends use it.
const TombstoneGrace = time.Hour

// RequestID identifies one HTTP request (random, per request). A rotation
// records the id of the request that made it, so that the same call sent
// twice (a Redis client resending a script after a broken connection) is
// answered as the original, even with REFRESH_REUSE_WINDOW=0. The zero
// RequestID is "none" and never matches.
type RequestID [8]byte

// Session is one refresh-token family: it starts at a password sign-in and
// ends when revoked, ended by the user's not-before time, evicted by the
// session cap, or at ExpiresAt (absolute, never extended). Nothing about
// its tokens is stored: a refresh token is derived from (user, session,
// generation) by the server (docs/design.md, "Sessions and rotation").
type Session struct {
	ID       string
	UserID   string
	ClientID string
	// KeyID is the refresh key the session started with (the token's
	// key id): a token MAC'd under any other key is not a token of this
	// session (rule row 1).
	KeyID string
	// JKT binds the session to a DPoP key: the RFC 7638 thumbprint of the
	// key that proved the sign-in (NewSession.Proof), "" if the sign-in
	// carried no proof. A bound session needs a proof by that key at every
	// presentation (rule row 6); an unbound one stays unbound for life.
	JKT        string
	Scope      string // space-separated scope granted at sign-in
	UserAgent  string
	IP         string
	Generation uint64 // generation of the current, unused refresh token (0 at sign-in)
	CreatedAt  time.Time
	UpdatedAt  time.Time // last rotation ("last used"); CreatedAt before the first
	ExpiresAt  time.Time
	// RevokedAt is zero while the session has not ended early. A session
	// ended by its user's SessionsEnded time reads as revoked at that time
	// (with the user's SessionsEndReason) even before a store records it.
	RevokedAt    time.Time
	RevokeReason string
	// LastRequest is the request that made the last rotation (zero before
	// the first). Only the rotation rule reads it.
	LastRequest RequestID
}

// Active reports whether the session is neither revoked nor expired at now.
func (s Session) Active(now time.Time) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt)
}

// MaxProofID bounds Proof.ID.
const MaxProofID = 64

// Proof is a DPoP proof (RFC 9449) the server has checked, as a store
// needs it: the key it proves and its replay id.
type Proof struct {
	JKT string // RFC 7638 thumbprint (base64url) of the key it proves
	// ID is the proof's replay id (dpop.Proof.ID), 1 to MaxProofID bytes:
	// a store records it, and refuses it when another request presents
	// it again (ErrProofReplayed).
	ID string
	// Expiry is until when ID is remembered; after it the proof is too
	// old to be accepted anyway.
	Expiry time.Time
}

// Check reports whether a proof can be recorded: an ID of 1 to
// MaxProofID bytes and an Expiry. Stores refuse others with an error (not
// a refusal of the rule: the server makes proofs' IDs and expiries).
func (p *Proof) Check() error {
	switch {
	case p == nil:
		return nil
	case p.ID == "" || len(p.ID) > MaxProofID:
		return fmt.Errorf("store: DPoP proof id of %d bytes (want 1 to %d)", len(p.ID), MaxProofID)
	case p.Expiry.UnixMilli() <= 0:
		return fmt.Errorf("store: DPoP proof without an expiry")
	}
	return nil
}

// NewSession is what CreateSession stores.
type NewSession struct {
	// Session: ID, UserID, ClientID, KeyID, Scope, UserAgent, IP,
	// CreatedAt, ExpiresAt. JKT is taken from Proof.
	Session Session
	// Max is the user's session cap (MAX_SESSIONS_PER_USER); 0 means
	// DefaultMaxSessions. Starting a session beyond it ends the user's
	// least recently used sessions.
	Max int
	// Proof is the DPoP proof of the sign-in, or nil: its ID is recorded
	// in the same atomic step (ErrProofReplayed if it was recorded
	// before), and the session is bound to its JKT.
	Proof *Proof
}

// Presentation is a refresh token presented to Rotate or Logout. The
// server has verified the token's MAC, so (UserID, SessionID,
// Generation, KeyID) are genuine: the store trusts them.
type Presentation struct {
	UserID     string
	SessionID  string
	Generation uint64 // generation of the presented token
	KeyID      string // the refresh key the token was MAC'd under (token.Refresh.KeyID)
	ClientID   string // the authenticated client; must own the session
	Now        time.Time
	// ReuseWindow is REFRESH_REUSE_WINDOW: how long after a rotation its
	// parent token is still answered with the same child. 0 is strict
	// single use (only a replay of the same request is answered).
	ReuseWindow time.Duration
	// RequestID is the request's own id: a rotation records it, and a
	// proof's replay id is recorded with it, so that the same call sent
	// twice is answered as the first. A logout may leave it zero.
	RequestID RequestID
	// Proof is the DPoP proof presented with the request, or nil.
	Proof *Proof
}

// Rotation asks to rotate the presented refresh token.
type Rotation struct {
	Presentation
	Scope string // requested scope; "" means the granted scope
}

// Outcome says which row of the rotation rule accepted a presentation.
type Outcome uint8

const (
	// OutcomeRotated: the current token was presented; the session moved
	// to the next generation.
	OutcomeRotated Outcome = iota + 1
	// OutcomeRetried: the token that was just rotated was presented again
	// within the reuse window (or by the same request): the answer is the
	// same child generation as before, and nothing was written.
	OutcomeRetried
	// OutcomeRecovered: a genuine token ahead of the stored generation (a
	// rotation acknowledged, then lost by a Redis failover) was presented;
	// the session moved to the generation after it.
	OutcomeRecovered
)

func (o Outcome) String() string {
	switch o {
	case OutcomeRotated:
		return "rotated"
	case OutcomeRetried:
		return "retried"
	case OutcomeRecovered:
		return "recovered"
	}
	return "none"
}

// Rotated is the result of an accepted rotation.
type Rotated struct {
	// Session after the rotation; Session.Generation is the generation of
	// the refresh token to hand out, and Session.Scope the granted scope.
	Session Session
	Scope   string   // the scope for the new access token (narrowed if asked)
	Roles   []string // the user's current roles
	Outcome Outcome
}

// Causes of reuse, for metrics and audit (ReuseError.Cause).
const (
	// CauseWindowExpired: the parent of the current token, presented
	// outside the reuse window (or with a zero window).
	CauseWindowExpired = "window_expired"
	// CauseChildUsed: an older token, whose child has been used.
	CauseChildUsed = "child_used"
)

// ReuseError is the ErrTokenReused of a presentation, with its cause.
// errors.Is(err, ErrTokenReused) holds for it.
type ReuseError struct{ Cause string }

func (e *ReuseError) Error() string { return ErrTokenReused.Error() + " (" + e.Cause + ")" }

// Is makes a ReuseError match ErrTokenReused.
func (e *ReuseError) Is(target error) bool { return target == ErrTokenReused }

// LogoutScope is what a logout ends.
type LogoutScope uint8

const (
	LogoutLocal  LogoutScope = iota // the presented token's session
	LogoutGlobal                    // every session of the user
	LogoutOthers                    // every session of the user but the presented one
)

// Logout asks to end sessions with a presented refresh token (POST
// /logout).
type Logout struct {
	Presentation
	Scope LogoutScope
}

// Position is where a presented generation p stands relative to a
// session's current generation g.
type Position uint8

const (
	PositionCurrent  Position = iota + 1 // p == g: the unused token
	PositionAhead                        // p > g: genuine, but the store lost the rotation that made it
	PositionPrevious                     // p == g-1: the token just rotated (retry window)
	PositionOlder                        // p < g-1: its child has been used
)

// Place returns where generation p stands in s. A server asking "is this
// refresh token current?" (introspection) wants Current or Ahead.
func Place(s Session, p uint64) Position {
	switch g := s.Generation; {
	case p == g:
		return PositionCurrent
	case p > g:
		return PositionAhead
	case p == g-1:
		return PositionPrevious
	}
	return PositionOlder
}

// Ended reports whether u's SessionsEnded time ends s: created at or
// before it, and not the exempt session. A nil user ends nothing here
// (Decide treats a missing user on its own).
func Ended(s Session, u *User) bool {
	return u != nil && !u.SessionsEnded.IsZero() && !s.CreatedAt.After(u.SessionsEnded) &&
		s.ID != u.SessionsExempt
}

// Effective returns s as it stands for its user u: a session ended by the
// user's SessionsEnded time and not yet recorded as revoked reads as
// revoked at that time, with the user's reason. Stores apply it to every
// session they return.
func Effective(s Session, u *User) Session {
	if s.RevokedAt.IsZero() && Ended(s, u) {
		s.RevokedAt, s.RevokeReason = u.SessionsEnded, u.sessionsEndReason()
	}
	return s
}

func (u *User) sessionsEndReason() string {
	if u.SessionsEndReason == "" {
		return ReasonLogout
	}
	return u.SessionsEndReason
}

// Verdict is what the rotation rule decides for one presentation.
type Verdict struct {
	// Err is the refusal, nil if the presentation is accepted.
	Err error
	// Revoke, if not empty, is the reason to record the session revoked
	// with, at RevokeAt (refusals only; nothing else is written then).
	Revoke   string
	RevokeAt time.Time
	// Accepted presentations: Position of the presented generation, the
	// Outcome of a rotation, and Generation, the session's generation
	// after it (the token to hand out).
	Position   Position
	Outcome    Outcome
	Generation uint64
	// Write is true when a rotation must store Generation, UpdatedAt = Now
	// and LastRequest = the request (OutcomeRotated, OutcomeRecovered).
	Write bool
	// RecordProof is true when the presentation's proof ID must be
	// recorded, with the request id, until the proof's Expiry (row 7):
	// every presentation that passes row 7, accepted or not.
	RecordProof bool
}

// Apply makes v's writes to s, the session record Decide was given with
// r: the revocation of a refusal, or the rotation of an accepted
// presentation that writes. It is what every store records.
func (v Verdict) Apply(s *Session, r Rotation) {
	if v.Revoke != "" {
		s.RevokedAt, s.RevokeReason = v.RevokeAt, v.Revoke
	}
	if v.Write {
		s.Generation, s.UpdatedAt, s.LastRequest = v.Generation, r.Now, r.RequestID
	}
}

// EndSessions is "log out everywhere" (except = "") or "log out others"
// on the user record: SessionsEnded = now, never moved back, with the
// exempt session and the reason. One write, whatever the number of
// sessions; Ended and Effective apply it.
func EndSessions(u *User, except, reason string, now time.Time) {
	if now.After(u.SessionsEnded) {
		u.SessionsEnded = now
	}
	u.SessionsExempt, u.SessionsEndReason = except, reason
}

// Decide is THE rotation rule, and this comment is the one table of it:
// memstore calls Decide, redisstore's rotate and logout scripts implement
// it in Lua (checked against Decide on generated records by
// redisstore's FuzzRule), and store/storetest runs one table of cases
// through Rotate and Logout of both stores. s is the session record (nil
// if there is none), u the user record (nil if there is none), r the
// presentation, and recorded the request that recorded r.Proof.ID before
// (nil if nobody did); p = r.Generation, g = s.Generation. The first
// matching row decides:
//
//  1. no session record, p ≥ MaxGeneration,      → ErrTokenUnknown (nothing written)
//     or r.KeyID ≠ s.KeyID (a token MAC'd under
//     another key is no token of this session)
//  2. user missing or disabled                   → ErrUserInactive; record the session
//     revoked (user_deleted / user_disabled) if it is not yet, at Now (at
//     SessionsEnded if that ended it: the time Effective shows)
//  3. session revoked, or ended by the user's     → ErrTokenRevoked; record an unrecorded
//     SessionsEnded (and not SessionsExempt)        end (at SessionsEnded, the user's reason)
//  4. now ≥ expiry                               → ErrTokenExpired
//  5. another client                             → ErrClientMismatch (nothing written; before
//     reuse, so a client cannot burn another client's session with its old tokens)
//  6. session bound (s.JKT ≠ ""), and no proof   → ErrProofRequired; a proof of another
//     key → ErrProofKeyMismatch (nothing written either way: the session goes on)
//  7. a proof whose ID was recorded by another   → ErrProofReplayed (nothing written);
//     request (any request, if r.RequestID is     otherwise a proof's ID is recorded
//     zero)                                       (RecordProof), whatever rows 8–11 decide
//  8. p == g                                     → rotate: g = g+1 (OutcomeRotated)
//  9. p > g (a genuine token the store lost)     → g = p+1 (OutcomeRecovered)
//  10. p == g-1 and (the same request id         → the same child g again, nothing
//     [a resent call] or now - last used < window)  written (OutcomeRetried)
//  11. otherwise (p == g-1 outside the window,   → ErrTokenReused (a *ReuseError:
//     or p < g-1)                                   window_expired | child_used); revoke the
//     session (reason reuse)
//
// Rows 8–10 first check the requested scope: not a subset of the granted
// one → ErrScopeWidened, nothing written but the proof's ID. Theft (11)
// wins over a scope error. Logout applies the same rule with no scope.
func Decide(s *Session, u *User, r Rotation, recorded *RequestID) Verdict {
	switch {
	case s == nil || r.Generation >= MaxGeneration || r.KeyID != s.KeyID: // 1
		return Verdict{Err: ErrTokenUnknown}
	case u == nil || u.Disabled: // 2
		v := Verdict{Err: ErrUserInactive}
		if s.RevokedAt.IsZero() {
			v.Revoke, v.RevokeAt = ReasonUserDeleted, r.Now
			if u != nil {
				v.Revoke = ReasonUserDisable
				if Ended(*s, u) { // as Effective shows it: at the disabling
					v.RevokeAt = u.SessionsEnded
				}
			}
		}
		return v
	case !s.RevokedAt.IsZero(): // 3
		return Verdict{Err: ErrTokenRevoked}
	case Ended(*s, u):
		return Verdict{Err: ErrTokenRevoked, Revoke: u.sessionsEndReason(), RevokeAt: u.SessionsEnded}
	case !r.Now.Before(s.ExpiresAt): // 4
		return Verdict{Err: ErrTokenExpired}
	case r.ClientID != s.ClientID: // 5
		return Verdict{Err: ErrClientMismatch}
	case s.JKT != "" && r.Proof == nil: // 6
		return Verdict{Err: ErrProofRequired}
	case s.JKT != "" && r.Proof.JKT != s.JKT:
		return Verdict{Err: ErrProofKeyMismatch}
	case r.Proof != nil && recorded != nil && (*recorded != r.RequestID || r.RequestID == RequestID{}): // 7
		return Verdict{Err: ErrProofReplayed}
	}
	v := Verdict{RecordProof: r.Proof != nil}
	switch v.Position = Place(*s, r.Generation); {
	case v.Position == PositionCurrent: // 8
		v.Outcome, v.Generation, v.Write = OutcomeRotated, s.Generation+1, true
	case v.Position == PositionAhead: // 9
		v.Outcome, v.Generation, v.Write = OutcomeRecovered, r.Generation+1, true
	case v.Position == PositionPrevious && (r.RequestID != RequestID{} && r.RequestID == s.LastRequest ||
		r.ReuseWindow > 0 && r.Now.Sub(s.UpdatedAt) < r.ReuseWindow): // 10
		v.Outcome, v.Generation = OutcomeRetried, s.Generation
	default: // 11
		cause := CauseChildUsed
		if v.Position == PositionPrevious {
			cause = CauseWindowExpired
		}
		return Verdict{Err: &ReuseError{Cause: cause}, Revoke: ReasonReuse, RevokeAt: r.Now, RecordProof: v.RecordProof}
	}
	if !ScopeWithin(r.Scope, s.Scope) {
		return Verdict{Err: ErrScopeWidened, RecordProof: v.RecordProof}
	}
	return v
}

// ScopeFields splits a scope at ASCII white space (as the Lua pattern %S+
// does).
func ScopeFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
	})
}

// ScopeWithin reports whether every scope token of requested is in
// granted; an empty request is within any grant.
func ScopeWithin(requested, granted string) bool {
	have := ScopeFields(granted)
	for _, w := range ScopeFields(requested) {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// NormalScope returns the requested scope normalised (single spaces), or
// the granted one if none was requested: the scope of the access token a
// rotation issues.
func NormalScope(requested, granted string) string {
	if f := ScopeFields(requested); len(f) > 0 {
		return strings.Join(f, " ")
	}
	return granted
}

// Store is tokend's state. Implementations must be safe for concurrent use
// and must make each method atomic: in particular, of N concurrent Rotate
// calls presenting the same generation at most one writes, and every
// accepted one answers the same generation. Times passed to a Store
// ("now") must not be zero.
//
// Errors other than the sentinels above (and *ReuseError) mean the store
// could not be reached or failed; callers treat them as "unavailable".
type Store interface {
	// Users. CreateUser and UpdateUser refuse roles that credential.Roles
	// refuses, writing nothing; callers check roles first, so that error
	// means a bug, not an outage.
	//
	// CreateUser stores a new user: ErrConflict if the id or the username
	// (case-insensitively) is taken, ErrLookAlike if another user's name
	// has the same skeleton (credential.Skeleton).
	CreateUser(ctx context.Context, u User) error
	User(ctx context.Context, id string) (User, error)
	UserByName(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser replaces the password hash and roles (Username, Disabled,
	// CreatedAt and the Sessions* fields are ignored); ErrNotFound.
	UpdateUser(ctx context.Context, u User) error
	// SetUserDisabled disables a user — ending every session, by setting
	// SessionsEnded = now (reason user_disabled), in O(1) — or re-enables
	// it (sessions ended by the disabling stay ended).
	SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error
	// DeleteUser deletes the user and every session record it owns (a
	// rotation with one of its tokens then finds no session:
	// ErrTokenUnknown).
	DeleteUser(ctx context.Context, id string) error

	// Clients.
	CreateClient(ctx context.Context, c Client) error // ErrConflict
	Client(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	// UpdateClient replaces the client's secret hash, grants, scopes,
	// audiences, RequireDPoP and TokensNotBefore (ID selects it; Public
	// and CreatedAt are ignored); ErrNotFound.
	UpdateClient(ctx context.Context, c Client) error
	DeleteClient(ctx context.Context, id string) error

	// Sessions.
	//
	// CreateSession starts a session at generation 0 for an existing,
	// enabled user (ErrUserInactive otherwise; ErrConflict if the id is
	// taken; ErrProofReplayed if the sign-in's proof was recorded before),
	// records the proof's ID and binds the session to its key, sets the
	// user's LastSignIn, and indexes the session under the user. If the user then has more
	// than NewSession.Max active sessions, the least recently used ones
	// (by UpdatedAt, ties by id) are ended (reason evicted) and their
	// ids returned, for audit and revocation events. The new session is
	// never evicted.
	CreateSession(ctx context.Context, s NewSession) (evicted []string, err error)
	// Rotate applies the rotation rule to a presented, MAC-verified
	// refresh token, atomically: Decide's doc comment is the table of
	// what is answered and written for each presentation.
	Rotate(ctx context.Context, r Rotation) (Rotated, error)
	// Logout ends sessions with a presented refresh token in one atomic
	// step, classifying it exactly as Rotate does (Decide, with no scope):
	// every refusal answers the same error with the same writes. An
	// accepted token performs l.Scope: local ends its session (reason
	// logout); global sets the user's SessionsEnded = Now with no
	// exemption; others sets SessionsEnded = Now exempting this session —
	// each O(1), whatever the number of sessions. A used token
	// (*ReuseError) revokes only its own session. The result is the
	// presented token's session after the call. ErrTokenRevoked,
	// ErrTokenExpired and ErrUserInactive mean "already ended" (the server
	// answers 204).
	Logout(ctx context.Context, l Logout) (Session, error)
	// Session returns the session whatever its state, as Effective makes
	// it (an end by the user's SessionsEnded shows as revoked), or
	// ErrNotFound. Revocation (RFC 7009) and introspection use it with a
	// MAC-verified refresh token's (uid, sid): Place(s, gen) tells whether
	// that token is current (Current or Ahead), the one just rotated
	// (Previous) or older.
	Session(ctx context.Context, userID, sessionID string) (Session, error)
	// ListSessions returns the user's active sessions, newest first.
	ListSessions(ctx context.Context, userID string, now time.Time) ([]Session, error)
	// RevokeSession revokes one session (idempotent: the first time and
	// reason are kept; ErrNotFound if absent).
	RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error
	// RevokeUserSessions ends all the user's sessions except `except` (may
	// be "") by setting the user's SessionsEnded = now: O(1), whatever
	// their number. ErrNotFound if there is no such user.
	RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) error

	// UseProof records a DPoP proof's ID for a request that has no
	// session (client_credentials, token exchange): ErrProofReplayed if
	// another request recorded it before (from UseProof; the IDs that
	// sign-ins and rotations record are kept per user). A resend of the
	// same request (the same req) is not a replay.
	UseProof(ctx context.Context, p Proof, req RequestID) error

	Ping(ctx context.Context) error
	Close() error
}
