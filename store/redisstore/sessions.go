package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// CreateSession stores and indexes a new session for an existing, enabled
// user (ErrUserInactive otherwise; ErrConflict if the session id is
// taken), ending the user's least recently used sessions beyond ns.Max
// (see the createSession script). The user agent is cut to
// store.MaxUserAgent bytes.
func (s *Store) CreateSession(ctx context.Context, ns store.NewSession) ([]string, error) {
	x := ns.Session
	if x.UserID == "" {
		return nil, store.ErrUserInactive
	}
	if x.ID == "" {
		return nil, errors.New("redisstore: create session: empty session id")
	}
	if err := ns.Proof.Check(); err != nil {
		return nil, err
	}
	limit := ns.Max
	if limit <= 0 {
		limit = store.DefaultMaxSessions
	}
	x.JKT = ""
	if ns.Proof != nil {
		x.JKT = ns.Proof.JKT
	}
	x.Generation, x.UpdatedAt, x.LastRequest, x.RevokedAt = 0, x.CreatedAt, store.RequestID{}, time.Time{}
	rec, err := encodeSession(x)
	if err != nil {
		return nil, wrap("create session", err)
	}
	keys := []string{s.userKey(x.UserID), s.sessionsKey(x.UserID)}
	args := []any{x.ID, rec, fields.Millis(x.CreatedAt), fields.Millis(x.ExpiresAt) + store.TombstoneGrace.Milliseconds(), limit}
	if p := ns.Proof; p != nil {
		keys = append(keys, s.proofKey(x.UserID, p.ID))
		args = append(args, fields.Millis(p.Expiry))
	}
	res, err := createSession.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return nil, wrap("create session", err)
	}
	if len(res) == 0 {
		return nil, errors.New("redisstore: create session: empty reply")
	}
	switch res[0] {
	case "ok":
		if len(res) == 1 {
			return nil, nil
		}
		return res[1:], nil
	case "inactive":
		return nil, store.ErrUserInactive
	case "conflict":
		return nil, store.ErrConflict
	case "replayed":
		return nil, store.ErrProofReplayed
	}
	return nil, fmt.Errorf("redisstore: create session: unexpected reply %q", res[0])
}

// refusals maps the rotate and logout scripts' refusals to the store's
// errors ("reused" carries a cause: reuseError).
var refusals = map[string]error{
	"unknown":        store.ErrTokenUnknown,
	"inactive":       store.ErrUserInactive,
	"revoked":        store.ErrTokenRevoked,
	"expired":        store.ErrTokenExpired,
	"client":         store.ErrClientMismatch,
	"scope":          store.ErrScopeWidened,
	"proof_required": store.ErrProofRequired,
	"proof_key":      store.ErrProofKeyMismatch,
	"replayed":       store.ErrProofReplayed,
}

var outcomes = map[string]store.Outcome{
	"rotated":   store.OutcomeRotated,
	"recovered": store.OutcomeRecovered,
	"retried":   store.OutcomeRetried,
}

// refusal returns the error of a refusal status.
func refusal(op, status, cause string) error {
	if status == "reused" {
		return &store.ReuseError{Cause: cause}
	}
	if e, ok := refusals[status]; ok {
		return e
	}
	return fmt.Errorf("redisstore: %s: unexpected reply %q", op, status)
}

// Rotate applies the rotation rule (store.Decide) in one script, so of
// concurrent presentations of one generation exactly one rotates.
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	if err := r.Proof.Check(); err != nil {
		return store.Rotated{}, err
	}
	if r.UserID == "" || r.SessionID == "" || r.Generation >= store.MaxGeneration {
		return store.Rotated{}, store.ErrTokenUnknown
	}
	scope := strings.Join(store.ScopeFields(r.Scope), " ")
	keys, args := s.presentation(r.Presentation, scope)
	res, err := rotate.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return store.Rotated{}, wrap("rotate", err)
	}
	if len(res) == 0 {
		return store.Rotated{}, errors.New("redisstore: rotate: empty reply")
	}
	status := str(res[0])
	outcome, ok := outcomes[status]
	if !ok || len(res) != 3 {
		cause := ""
		if len(res) > 1 {
			cause = str(res[1])
		}
		return store.Rotated{}, refusal("rotate", status, cause)
	}
	ses, err := decodeSession(r.UserID, r.SessionID, str(res[1]))
	if err != nil {
		return store.Rotated{}, wrap("rotate", err)
	}
	return store.Rotated{
		Session: ses,
		Scope:   store.NormalScope(scope, ses.Scope),
		Roles:   fields.Words(str(res[2])),
		Outcome: outcome,
	}, nil
}

// presentation returns the keys and ARGV of the rotate and logout
// scripts: first is ARGV[1], then the presentation as the scripts'
// presentation() reads it.
func (s *Store) presentation(p store.Presentation, first string) ([]string, []any) {
	keys := []string{s.sessionsKey(p.UserID), s.userKey(p.UserID)}
	args := []any{first, p.SessionID, strconv.FormatUint(p.Generation, 10), p.ClientID, p.KeyID,
		fields.Millis(fields.NowOr(p.Now)), window(p.ReuseWindow), p.RequestID[:], s.serverClock, "0"}
	if p.Proof != nil {
		keys = append(keys, s.proofKey(p.UserID, p.Proof.ID))
		args[9] = "1"
		args = append(args, encodeJKT(p.Proof.JKT), fields.Millis(p.Proof.Expiry))
	}
	return keys, args
}

// window encodes a reuse window in whole milliseconds, as store.Decide
// counts it.
func window(d time.Duration) int64 { return max(d.Milliseconds(), 0) }

var logoutScopes = map[store.LogoutScope]string{
	store.LogoutLocal:  "local",
	store.LogoutGlobal: "global",
	store.LogoutOthers: "others",
}

// Logout classifies the presented token as Rotate does and ends what
// l.Scope asks, in one script (see store.Store.Logout).
func (s *Store) Logout(ctx context.Context, l store.Logout) (store.Session, error) {
	scope, ok := logoutScopes[l.Scope]
	if !ok {
		return store.Session{}, fmt.Errorf("redisstore: logout: unknown scope %d", l.Scope)
	}
	if err := l.Proof.Check(); err != nil {
		return store.Session{}, err
	}
	if l.UserID == "" || l.SessionID == "" || l.Generation >= store.MaxGeneration {
		return store.Session{}, store.ErrTokenUnknown
	}
	keys, args := s.presentation(l.Presentation, scope)
	res, err := logout.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return store.Session{}, wrap("logout", err)
	}
	if len(res) != 4 {
		return store.Session{}, errors.New("redisstore: logout: malformed reply")
	}
	status := str(res[0])
	if status == "unknown" {
		return store.Session{}, store.ErrTokenUnknown
	}
	ses, err := s.effective(l.UserID, l.SessionID, res[2], res[3])
	if err != nil {
		return store.Session{}, wrap("logout", err)
	}
	if status != "ok" {
		return ses, refusal("logout", status, str(res[1]))
	}
	return ses, nil
}

// effective decodes a session record and its user record (nil if none)
// and applies store.Effective.
func (s *Store) effective(userID, sessionID string, sv, uv any) (store.Session, error) {
	ses, err := decodeSession(userID, sessionID, str(sv))
	if err != nil {
		return store.Session{}, err
	}
	if uv == nil {
		return ses, nil
	}
	u, err := decodeUser(str(uv))
	if err != nil {
		return store.Session{}, err
	}
	return store.Effective(ses, &u), nil
}

// Session returns the session whatever its state (see store.Effective),
// or ErrNotFound. One script reads the session and its user (same slot).
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	if userID == "" || sessionID == "" {
		return store.Session{}, store.ErrNotFound
	}
	ss, err := s.readSessions(ctx, userID, sessionID)
	if err != nil {
		return store.Session{}, wrap("session", err)
	}
	if len(ss) == 0 {
		return store.Session{}, store.ErrNotFound
	}
	return ss[0], nil
}

// ListSessions returns the user's sessions active at now, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	if userID == "" {
		return []store.Session{}, nil
	}
	now = fields.NowOr(now)
	all, err := s.readSessions(ctx, userID, "")
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	out := make([]store.Session, 0, len(all))
	for _, ses := range all {
		if ses.Active(now) {
			out = append(out, ses)
		}
	}
	slices.SortFunc(out, func(a, b store.Session) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// readSessions returns the session sessionID of the user, or all the
// user's sessions if it is "", as store.Effective makes them; records
// gone by the wall clock (their expiry plus store.TombstoneGrace, when
// the scripts stop reading them too) and of earlier layouts are left out.
func (s *Store) readSessions(ctx context.Context, userID, sessionID string) ([]store.Session, error) {
	args := []any{}
	if sessionID != "" {
		args = append(args, sessionID)
	}
	res, err := readSessions.Run(ctx, s.rdb, []string{s.userKey(userID), s.sessionsKey(userID)}, args...).Slice()
	if err != nil {
		return nil, err
	}
	if len(res)%2 != 1 {
		return nil, errors.New("malformed reply")
	}
	var u *store.User
	if res[0] != nil {
		x, err := decodeUser(str(res[0]))
		if err != nil {
			return nil, err
		}
		u = &x
	}
	gone := time.Now().Add(-store.TombstoneGrace)
	out := make([]store.Session, 0, len(res)/2)
	for i := 1; i < len(res); i += 2 {
		v := str(res[i+1])
		if v == "" || v[0] != sessionVersion {
			continue // a record of an earlier layout: its session ended
		}
		ses, err := decodeSession(userID, str(res[i]), v)
		if err != nil {
			return nil, err
		}
		if !ses.ExpiresAt.After(gone) {
			continue
		}
		out = append(out, store.Effective(ses, u))
	}
	return out, nil
}

// RevokeSession revokes one session. Revoking a revoked session succeeds
// and keeps the first time and reason; ErrNotFound if there is no record.
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error {
	if userID == "" || sessionID == "" {
		return store.ErrNotFound
	}
	n, err := revokeSession.Run(ctx, s.rdb, []string{s.sessionsKey(userID), s.userKey(userID)},
		sessionID, fields.Millis(fields.NowOr(now)), fields.ReasonOr(reason)).Int()
	if err != nil {
		return wrap("revoke session", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeUserSessions ends the user's sessions except `except` by the
// user's not-before time: one script whose cost does not depend on the
// number of sessions. A user that does not exist has none.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) error {
	if userID == "" {
		return nil
	}
	err := revokeUserSessions.Run(ctx, s.rdb, []string{s.userKey(userID)},
		except, fields.Millis(fields.NowOr(now)), fields.ReasonOr(reason)).Err()
	if err != nil {
		return wrap("revoke user sessions", err)
	}
	return nil
}

// UseProof records a DPoP proof's id for a request without a session
// (one script on the key <prefix>dpop:<id>), or returns
// ErrProofReplayed.
func (s *Store) UseProof(ctx context.Context, p store.Proof, req store.RequestID) error {
	if err := p.Check(); err != nil {
		return err
	}
	n, err := useProof.Run(ctx, s.rdb, []string{s.prefix + "dpop:" + p.ID}, req[:], fields.Millis(p.Expiry)).Int()
	if err != nil {
		return wrap("use proof", err)
	}
	if n == 0 {
		return store.ErrProofReplayed
	}
	return nil
}
