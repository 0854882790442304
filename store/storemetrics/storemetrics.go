// Package storemetrics wraps a store.Store so that every call is timed in
// a Prometheus histogram by operation, and every failure of the store
// itself (not an answer such as "not found" or "reused") is counted:
//
//	tokend_store_operation_duration_seconds{operation}  histogram
//	tokend_store_errors_total{operation}                counter
//
// A decorator rather than go-redis hooks: it measures what the server
// waits for (one Lua script, retries included) and works the same for the
// Redis and the embedded store.
package storemetrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/store"
)

// Store is a store.Store whose calls are measured. It writes out every
// method of store.Store (no embedding), each naming itself in operations,
// so a method added to store.Store does not compile here until it is
// measured (or, like Close, deliberately not).
type Store struct {
	next     store.Store
	duration *prometheus.HistogramVec
	ops      map[string]op // by method name
}

var _ store.Store = (*Store)(nil)

// op is one measured method: its label, and its error counter.
type op struct {
	label  string
	errors prometheus.Counter
}

// operations maps every store.Store method to the value of its operation
// label; "" is not measured (a test checks it lists every method).
var operations = map[string]string{
	"CreateUser": "create_user", "User": "user", "UserByName": "user_by_name", "ListUsers": "list_users",
	"UpdateUser": "update_user", "SetUserDisabled": "set_user_disabled", "DeleteUser": "delete_user",
	"CreateClient": "create_client", "Client": "client", "ListClients": "list_clients",
	"UpdateClient": "update_client", "DeleteClient": "delete_client",
	"CreateSession": "create_session", "Rotate": "rotate", "Logout": "logout", "Session": "session",
	"ListSessions": "list_sessions", "RevokeSession": "revoke_session", "RevokeUserSessions": "revoke_user_sessions",
	"UseProof": "use_proof",
	"Ping":     "ping",
	"Close":    "", // closing is not an operation anyone waits for
}

// Wrap returns st measured into reg.
func Wrap(st store.Store, reg prometheus.Registerer) (*Store, error) {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokend_store_operation_duration_seconds",
		Help:    "Latency of store operations (one Redis round trip each, retries included).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"operation"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokend_store_errors_total",
		Help: "Store operations that failed because the store could not answer (unreachable, timed out).",
	}, []string{"operation"})
	if err := reg.Register(duration); err != nil {
		return nil, err
	}
	if err := reg.Register(errs); err != nil {
		return nil, err
	}
	s := &Store{next: st, duration: duration, ops: make(map[string]op, len(operations))}
	for method, label := range operations {
		if label != "" {
			// The error counters exist from the start, at 0; a histogram
			// appears with its operation's first call.
			s.ops[method] = op{label: label, errors: errs.WithLabelValues(label)}
		}
	}
	return s, nil
}

// answers are errors that are a store's answer, not its failure.
var answers = []error{
	store.ErrNotFound, store.ErrConflict, store.ErrTokenUnknown, store.ErrTokenExpired, store.ErrTokenRevoked,
	store.ErrTokenReused, store.ErrClientMismatch, store.ErrUserInactive, store.ErrScopeWidened,
	context.Canceled,
}

// measure records one call of method; deferred with a pointer to the
// call's error.
func (s *Store) measure(method string, start time.Time, errp *error) {
	o := s.ops[method]
	s.duration.WithLabelValues(o.label).Observe(time.Since(start).Seconds())
	err := *errp
	if err == nil {
		return
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return
		}
	}
	o.errors.Inc()
}

// CreateUser calls the wrapped store's CreateUser, measured as "create_user".
func (s *Store) CreateUser(ctx context.Context, u store.User) (err error) {
	defer s.measure("CreateUser", time.Now(), &err)
	return s.next.CreateUser(ctx, u)
}

// User calls the wrapped store's User, measured as "user".
func (s *Store) User(ctx context.Context, id string) (_ store.User, err error) {
	defer s.measure("User", time.Now(), &err)
	return s.next.User(ctx, id)
}

// UserByName calls the wrapped store's UserByName, measured as "user_by_name".
func (s *Store) UserByName(ctx context.Context, username string) (_ store.User, err error) {
	defer s.measure("UserByName", time.Now(), &err)
	return s.next.UserByName(ctx, username)
}

// ListUsers calls the wrapped store's ListUsers, measured as "list_users".
func (s *Store) ListUsers(ctx context.Context) (_ []store.User, err error) {
	defer s.measure("ListUsers", time.Now(), &err)
	return s.next.ListUsers(ctx)
}

// UpdateUser calls the wrapped store's UpdateUser, measured as "update_user".
func (s *Store) UpdateUser(ctx context.Context, u store.User) (err error) {
	defer s.measure("UpdateUser", time.Now(), &err)
	return s.next.UpdateUser(ctx, u)
}

// SetUserDisabled calls the wrapped store's SetUserDisabled, measured as "set_user_disabled".
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) (err error) {
	defer s.measure("SetUserDisabled", time.Now(), &err)
	return s.next.SetUserDisabled(ctx, id, disabled, now)
}

// DeleteUser calls the wrapped store's DeleteUser, measured as "delete_user".
func (s *Store) DeleteUser(ctx context.Context, id string) (err error) {
	defer s.measure("DeleteUser", time.Now(), &err)
	return s.next.DeleteUser(ctx, id)
}

// CreateClient calls the wrapped store's CreateClient, measured as "create_client".
func (s *Store) CreateClient(ctx context.Context, c store.Client) (err error) {
	defer s.measure("CreateClient", time.Now(), &err)
	return s.next.CreateClient(ctx, c)
}

// Client calls the wrapped store's Client, measured as "client".
func (s *Store) Client(ctx context.Context, id string) (_ store.Client, err error) {
	defer s.measure("Client", time.Now(), &err)
	return s.next.Client(ctx, id)
}

// ListClients calls the wrapped store's ListClients, measured as "list_clients".
func (s *Store) ListClients(ctx context.Context) (_ []store.Client, err error) {
	defer s.measure("ListClients", time.Now(), &err)
	return s.next.ListClients(ctx)
}

// UpdateClient calls the wrapped store's UpdateClient, measured as "update_client".
func (s *Store) UpdateClient(ctx context.Context, c store.Client) (err error) {
	defer s.measure("UpdateClient", time.Now(), &err)
	return s.next.UpdateClient(ctx, c)
}

// DeleteClient calls the wrapped store's DeleteClient, measured as "delete_client".
func (s *Store) DeleteClient(ctx context.Context, id string) (err error) {
	defer s.measure("DeleteClient", time.Now(), &err)
	return s.next.DeleteClient(ctx, id)
}

// CreateSession calls the wrapped store's CreateSession, measured as "create_session".
func (s *Store) CreateSession(ctx context.Context, n store.NewSession) (_ []string, err error) {
	defer s.measure("CreateSession", time.Now(), &err)
	return s.next.CreateSession(ctx, n)
}

// Rotate calls the wrapped store's Rotate, measured as "rotate".
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (_ store.Rotated, err error) {
	defer s.measure("Rotate", time.Now(), &err)
	return s.next.Rotate(ctx, r)
}

// Logout calls the wrapped store's Logout, measured as "logout".
func (s *Store) Logout(ctx context.Context, l store.Logout) (_ store.Session, err error) {
	defer s.measure("Logout", time.Now(), &err)
	return s.next.Logout(ctx, l)
}

// Session calls the wrapped store's Session, measured as "session".
func (s *Store) Session(ctx context.Context, userID, sessionID string) (_ store.Session, err error) {
	defer s.measure("Session", time.Now(), &err)
	return s.next.Session(ctx, userID, sessionID)
}

// ListSessions calls the wrapped store's ListSessions, measured as "list_sessions".
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) (_ []store.Session, err error) {
	defer s.measure("ListSessions", time.Now(), &err)
	return s.next.ListSessions(ctx, userID, now)
}

// RevokeSession calls the wrapped store's RevokeSession, measured as "revoke_session".
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) (err error) {
	defer s.measure("RevokeSession", time.Now(), &err)
	return s.next.RevokeSession(ctx, userID, sessionID, reason, now)
}

// RevokeUserSessions calls the wrapped store's RevokeUserSessions, measured as "revoke_user_sessions".
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) (err error) {
	defer s.measure("RevokeUserSessions", time.Now(), &err)
	return s.next.RevokeUserSessions(ctx, userID, except, reason, now)
}

// UseProof calls the wrapped store's UseProof, measured as "use_proof".
func (s *Store) UseProof(ctx context.Context, p store.Proof, req store.RequestID) (err error) {
	defer s.measure("UseProof", time.Now(), &err)
	return s.next.UseProof(ctx, p, req)
}

// Ping calls the wrapped store's Ping, measured as "ping".
func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.measure("Ping", time.Now(), &err)
	return s.next.Ping(ctx)
}

// Close closes the wrapped store; it is not measured.
func (s *Store) Close() error { return s.next.Close() }
