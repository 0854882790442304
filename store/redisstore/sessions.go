package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/store"
)

// CreateSession stores and indexes a new session for an existing, enabled
// user (ErrUserInactive otherwise; ErrConflict if the session id is
// taken). The user agent is cut to store.MaxUserAgent bytes.
func (s *Store) CreateSession(ctx context.Context, ns store.NewSession) error {
	x := ns.Session
	if x.UserID == "" {
		return store.ErrUserInactive
	}
	if x.ID == "" {
		return errors.New("redisstore: create session: empty session id")
	}
	ea := ms(x.ExpiresAt)
	grace := TombstoneGrace.Milliseconds()
	res, err := createSession.Run(ctx, s.rdb,
		[]string{s.userKey(x.UserID), s.indexKey(x.UserID), s.sessionKey(x.UserID, x.ID)},
		x.ID, x.ClientID, x.Scope, store.TruncateUserAgent(x.UserAgent), x.IP,
		ms(x.CreatedAt), ea, ns.Token[:], ea+grace, grace).Text()
	if err != nil {
		return wrap("create session", err)
	}
	switch res {
	case "ok":
		return nil
	case "inactive":
		return store.ErrUserInactive
	case "conflict":
		return store.ErrConflict
	}
	return fmt.Errorf("redisstore: create session: unexpected reply %q", res)
}

// rotateErrors maps the rotate script's refusals to the store's errors.
var rotateErrors = map[string]error{
	"unknown":  store.ErrTokenUnknown,
	"inactive": store.ErrUserInactive,
	"revoked":  store.ErrTokenRevoked,
	"expired":  store.ErrTokenExpired,
	"client":   store.ErrClientMismatch,
	"scope":    store.ErrScopeWidened,
	"reused":   store.ErrTokenReused,
}

// Rotate checks the presented refresh token and, if it is the session's
// current one, replaces it with r.Next — in one script, so of concurrent
// rotations of one token exactly one succeeds. See the rotate script for
// the order of the checks.
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	if r.UserID == "" || r.SessionID == "" {
		return store.Rotated{}, store.ErrTokenUnknown
	}
	scope := strings.Join(scopeFields(r.Scope), " ")
	res, err := rotate.Run(ctx, s.rdb,
		[]string{s.sessionKey(r.UserID, r.SessionID), s.userKey(r.UserID)},
		r.Presented[:], r.Next[:], r.ClientID, scope, ms(nowOr(r.Now)), s.used).Slice()
	if err != nil {
		return store.Rotated{}, wrap("rotate", err)
	}
	if len(res) == 0 {
		return store.Rotated{}, errors.New("redisstore: rotate: empty reply")
	}
	status := str(res[0])
	if status != "ok" || len(res) != 10 {
		if e, ok := rotateErrors[status]; ok {
			return store.Rotated{}, e
		}
		return store.Rotated{}, fmt.Errorf("redisstore: rotate: unexpected reply %q", status)
	}
	out := store.Rotated{
		Session: store.Session{
			ID:         r.SessionID,
			UserID:     r.UserID,
			ClientID:   str(res[1]),
			Scope:      str(res[2]),
			UserAgent:  str(res[3]),
			IP:         str(res[4]),
			Generation: int(num(res[5])),
			CreatedAt:  msTime(res[6]),
			UpdatedAt:  msTime(res[7]),
			ExpiresAt:  msTime(res[8]),
		},
		Scope: scope,
		Roles: words(str(res[9])),
	}
	if out.Scope == "" {
		out.Scope = out.Session.Scope
	}
	return out, nil
}

// TokenSession finds the session of a current or used refresh token,
// whatever the session's state, or returns ErrTokenUnknown.
func (s *Store) TokenSession(ctx context.Context, userID, sessionID string, h store.TokenHash) (store.TokenInfo, error) {
	if userID == "" || sessionID == "" {
		return store.TokenInfo{}, store.ErrTokenUnknown
	}
	ses, cur, fps, err := s.get(ctx, userID, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return store.TokenInfo{}, store.ErrTokenUnknown
	}
	if err != nil {
		return store.TokenInfo{}, wrap("token session", err)
	}
	info := store.TokenInfo{Session: ses}
	switch {
	case cur == string(h[:]):
		info.Current = true
	case !used(fps, h):
		return store.TokenInfo{}, store.ErrTokenUnknown
	}
	return info, nil
}

// used reports whether h's fingerprint is among the used ones.
func used(fps string, h store.TokenHash) bool {
	for i := 0; i+fingerprint <= len(fps); i += fingerprint {
		if fps[i:i+fingerprint] == string(h[:fingerprint]) {
			return true
		}
	}
	return false
}

// Session returns the session whatever its state, or ErrNotFound.
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	if userID == "" || sessionID == "" {
		return store.Session{}, store.ErrNotFound
	}
	ses, _, _, err := s.get(ctx, userID, sessionID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Session{}, wrap("session", err)
	}
	return ses, err
}

// get reads a session record: the session, its current token hash and
// its used-token fingerprints. ErrNotFound if there is none.
func (s *Store) get(ctx context.Context, userID, sessionID string) (store.Session, string, string, error) {
	v, err := s.rdb.Get(ctx, s.sessionKey(userID, sessionID)).Result()
	if errors.Is(err, redis.Nil) {
		return store.Session{}, "", "", store.ErrNotFound
	}
	if err != nil {
		return store.Session{}, "", "", err
	}
	return decodeSession(userID, sessionID, v)
}

// ListSessions returns the user's sessions active at now, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	if userID == "" {
		return []store.Session{}, nil
	}
	res, err := listSessions.Run(ctx, s.rdb, []string{s.indexKey(userID)}, s.sessionTag(userID), ms(nowOr(now))).Slice()
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	if len(res)%2 != 0 {
		return nil, errors.New("redisstore: list sessions: malformed reply")
	}
	out := make([]store.Session, 0, len(res)/2)
	for i := 0; i < len(res); i += 2 {
		ses, _, _, err := decodeSession(userID, str(res[i]), str(res[i+1]))
		if err != nil {
			return nil, wrap("list sessions", err)
		}
		out = append(out, ses)
	}
	sortSessions(out)
	return out, nil
}

// sortSessions orders sessions newest first, then by id.
func sortSessions(ss []store.Session) {
	slices.SortFunc(ss, func(a, b store.Session) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// RevokeSession revokes one session. Revoking a revoked session succeeds
// and keeps the first time and reason; ErrNotFound if there is no record.
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error {
	if userID == "" || sessionID == "" {
		return store.ErrNotFound
	}
	n, err := revokeSession.Run(ctx, s.rdb, []string{s.sessionKey(userID, sessionID)},
		ms(nowOr(now)), reasonOr(reason)).Int()
	if err != nil {
		return wrap("revoke session", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeUserSessions revokes the user's sessions active at now except
// `except`, and returns how many.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) (int, error) {
	if userID == "" {
		return 0, nil
	}
	n, err := revokeUserSessions.Run(ctx, s.rdb, []string{s.indexKey(userID)},
		s.sessionTag(userID), except, ms(nowOr(now)), reasonOr(reason)).Int()
	if err != nil {
		return 0, wrap("revoke user sessions", err)
	}
	return n, nil
}

// scopeFields splits a scope at ASCII white space, as the Lua %S+ pattern
// does.
func scopeFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
	})
}

func reasonOr(r string) string {
	if r == "" {
		return store.ReasonRevoked
	}
	return r
}
