package events

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tokend/tokend/store"
)

// Store is a store.Store that appends an Event to a Log for every session
// end it performs or detects, and for every client deletion or update: the
// one place where the server's and the CLI's session ends become events
// (docs/design.md, "Revocation events").
//
// The event is appended after the store's own write succeeded, never
// before: an event for a revocation that then failed would make resource
// servers refuse a live session until its tokens expire. If the append
// fails (the store wrote, then Redis failed), the store's answer stands,
// the event is lost, and that is logged as an error and counted (Lost).
//
// Store writes out every method of store.Store (no embedding), and emits
// says which events each emits, so a method added to store.Store — one
// that ends sessions, say — does not compile here until it is decided
// whether it emits.
type Store struct {
	next      store.Store
	log       Log
	accessTTL time.Duration
	logger    *slog.Logger
	now       func() time.Time
	lost      func()
}

// Options configure Wrap.
type Options struct {
	// AccessTTL is the access-token lifetime (JWT_ACCESS_EXPIRES_IN): an
	// event matters until AccessTTL after it happened.
	AccessTTL time.Duration
	Logger    *slog.Logger // nil: discard
	Now       func() time.Time
	// Lost, if set, is called for every event that could not be appended.
	Lost func()
}

// Wrap returns st emitting into log.
func Wrap(st store.Store, log Log, o Options) *Store {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lost == nil {
		o.Lost = func() {}
	}
	return &Store{next: st, log: log, accessTTL: o.AccessTTL, logger: o.Logger, now: o.Now, lost: o.Lost}
}

var _ store.Store = (*Store)(nil)

// emits says, for every store.Store method, which events it appends (""
// for none: it ends no session and changes no client). A test checks that
// it lists every method, and that the methods listed with "" emit nothing.
var emits = map[string]string{
	"SetUserDisabled":    "a user event when it disables",
	"DeleteUser":         "a user event",
	"UpdateClient":       "a client-updated event",
	"DeleteClient":       "a client event",
	"CreateSession":      "a session event per session the cap evicted",
	"Rotate":             "a session event when it revokes the session for reuse",
	"Logout":             "a session event (local, or reuse) or a user event (global, others)",
	"RevokeSession":      "a session event",
	"RevokeUserSessions": "a user event",
	"CreateUser":         "",
	"User":               "",
	"UserByName":         "",
	"ListUsers":          "",
	"UpdateUser":         "", // a new password ends sessions through RevokeUserSessions
	"CreateClient":       "",
	"Client":             "",
	"ListClients":        "",
	"Session":            "",
	"ListSessions":       "",
	"UseProof":           "",
	"Ping":               "",
	"Close":              "",
}

// emit appends e, filling Time and Until.
func (s *Store) emit(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	// An access token issued at or before e.Time expires at the latest
	// AccessTTL later (its iat and exp are whole seconds, exp = iat + TTL).
	e.Until = e.Time.Add(s.accessTTL)
	// A cancelled request must not lose the event of a write that happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if _, err = s.log.Append(ctx, e); err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
	s.lost()
	s.logger.LogAttrs(ctx, slog.LevelError, "revocation event lost: resource servers following GET /events will not hear of this session end",
		slog.String("kind", string(e.Kind)), slog.String("user_id", e.Subject), slog.String("session_id", e.Session),
		slog.String("client_id", e.Client), slog.String("reason", e.Reason), slog.String("error", err.Error()))
}

// active lists the user's active sessions but except before a user-wide
// end, so the event can name them (see KindUser). The store ends them in
// O(1); this read is the price of refusing their tokens exactly, paid
// only on user-wide ends. If it fails the event goes without the list.
func (s *Store) active(ctx context.Context, userID, except string, now time.Time) []string {
	list, err := s.next.ListSessions(ctx, userID, now)
	if err != nil {
		return nil
	}
	ids := make([]string, 0, len(list))
	for _, ss := range list {
		if ss.ID != except {
			ids = append(ids, ss.ID)
		}
	}
	return ids
}

// SetUserDisabled disables or enables the user; disabling emits a user event.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error {
	var sids []string
	if disabled {
		sids = s.active(ctx, id, "", now)
	}
	if err := s.next.SetUserDisabled(ctx, id, disabled, now); err != nil {
		return err
	}
	if disabled {
		s.emit(ctx, Event{Kind: KindUser, Subject: id, NotBefore: now, Sessions: sids, Reason: store.ReasonUserDisable, Time: now})
	}
	return nil
}

// DeleteUser deletes the user and emits a user event.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	now := s.now()
	sids := s.active(ctx, id, "", now)
	if err := s.next.DeleteUser(ctx, id); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: KindUser, Subject: id, NotBefore: now, Sessions: sids, Reason: store.ReasonUserDeleted, Time: now})
	return nil
}

// DeleteClient deletes the client and emits a client event: every
// replica drops it from its client cache, and resource servers refuse the
// access tokens it was issued before now.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := s.next.DeleteClient(ctx, id); err != nil {
		return err
	}
	now := s.now()
	s.emit(ctx, Event{Kind: KindClient, Client: id, NotBefore: now, Reason: ReasonClientDeleted, Time: now})
	return nil
}

// UpdateClient updates the client and emits a client-updated event: every
// replica drops it from its client cache, so a rotated secret or narrowed
// grants take effect everywhere within the feed's delay, and ends the
// client's feed streams whose credentials no longer hold. The event
// carries the client's TokensNotBefore, so resource servers refuse the
// client_credentials tokens it ends.
func (s *Store) UpdateClient(ctx context.Context, c store.Client) error {
	if err := s.next.UpdateClient(ctx, c); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: KindClientUpdated, Client: c.ID, NotBefore: c.TokensNotBefore, Reason: ReasonClientUpdated})
	return nil
}

// Rotate rotates; when it revokes the session for reuse it emits a
// session event.
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (store.Rotated, error) {
	out, err := s.next.Rotate(ctx, r)
	if errors.Is(err, store.ErrTokenReused) {
		s.emit(ctx, Event{Kind: KindSession, Subject: r.UserID, Session: r.SessionID, Client: r.ClientID, Reason: store.ReasonReuse, Time: r.Now})
	}
	return out, err
}

// RevokeSession revokes the session and emits a session event (also when
// it was already revoked: the event is idempotent for a consumer).
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) error {
	if err := s.next.RevokeSession(ctx, userID, sessionID, reason, now); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: KindSession, Subject: userID, Session: sessionID, Reason: reason, Time: now})
	return nil
}

// RevokeUserSessions ends the user's sessions but except and emits one
// user event (not-before now, except exempt), whatever their number.
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) error {
	sids := s.active(ctx, userID, except, now)
	if err := s.next.RevokeUserSessions(ctx, userID, except, reason, now); err != nil {
		return err
	}
	s.emit(ctx, Event{Kind: KindUser, Subject: userID, NotBefore: now, Except: except, Sessions: sids, Reason: reason, Time: now})
	return nil
}

// UseProof records a DPoP proof's id; it ends nothing.
func (s *Store) UseProof(ctx context.Context, p store.Proof, req store.RequestID) error {
	return s.next.UseProof(ctx, p, req)
}

// CreateSession starts a session; every session the per-user cap ends to
// make room is a session event.
func (s *Store) CreateSession(ctx context.Context, n store.NewSession) ([]string, error) {
	evicted, err := s.next.CreateSession(ctx, n)
	if err != nil {
		return evicted, err
	}
	for _, sid := range evicted {
		s.emit(ctx, Event{Kind: KindSession, Subject: n.Session.UserID, Session: sid, Reason: store.ReasonEvicted, Time: n.Session.CreatedAt})
	}
	return evicted, nil
}

// Logout ends what the logout asked for and emits it: one session event
// (local, or a used token's session revoked for reuse), or one user event
// (global: not-before now; others: the same, this session exempt).
// "Already ended" answers emit nothing: the end that ended it did.
func (s *Store) Logout(ctx context.Context, l store.Logout) (store.Session, error) {
	var sids []string
	switch l.Scope {
	case store.LogoutGlobal:
		sids = s.active(ctx, l.UserID, "", l.Now)
	case store.LogoutOthers:
		sids = s.active(ctx, l.UserID, l.SessionID, l.Now)
	}
	sess, err := s.next.Logout(ctx, l)
	switch {
	case errors.Is(err, store.ErrTokenReused):
		s.emit(ctx, Event{Kind: KindSession, Subject: l.UserID, Session: l.SessionID, Client: l.ClientID, Reason: store.ReasonReuse, Time: l.Now})
	case err != nil:
	case l.Scope == store.LogoutGlobal:
		s.emit(ctx, Event{Kind: KindUser, Subject: l.UserID, NotBefore: l.Now, Sessions: sids, Reason: store.ReasonLogout, Time: l.Now})
	case l.Scope == store.LogoutOthers:
		s.emit(ctx, Event{Kind: KindUser, Subject: l.UserID, NotBefore: l.Now, Except: l.SessionID, Sessions: sids, Reason: store.ReasonLogout, Time: l.Now})
	default:
		s.emit(ctx, Event{Kind: KindSession, Subject: l.UserID, Session: l.SessionID, Client: l.ClientID, Reason: store.ReasonLogout, Time: l.Now})
	}
	return sess, err
}

// The methods that end no session and change no client pass through.

func (s *Store) CreateUser(ctx context.Context, u store.User) error { return s.next.CreateUser(ctx, u) }
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	return s.next.User(ctx, id)
}
func (s *Store) UserByName(ctx context.Context, username string) (store.User, error) {
	return s.next.UserByName(ctx, username)
}
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) { return s.next.ListUsers(ctx) }
func (s *Store) UpdateUser(ctx context.Context, u store.User) error  { return s.next.UpdateUser(ctx, u) }
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.next.CreateClient(ctx, c)
}
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	return s.next.Client(ctx, id)
}
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	return s.next.ListClients(ctx)
}
func (s *Store) Session(ctx context.Context, userID, sessionID string) (store.Session, error) {
	return s.next.Session(ctx, userID, sessionID)
}
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	return s.next.ListSessions(ctx, userID, now)
}
func (s *Store) Ping(ctx context.Context) error { return s.next.Ping(ctx) }
func (s *Store) Close() error                   { return s.next.Close() }
