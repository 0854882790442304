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

// Store is a store.Store whose calls are measured.
type Store struct {
	store.Store
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// operations are the label values of the operation label.
var operations = []string{
	"create_user", "user", "user_by_name", "list_users", "update_user", "set_user_disabled", "delete_user",
	"create_client", "client", "list_clients", "update_client", "delete_client",
	"create_session", "rotate", "logout", "session", "list_sessions", "revoke_session", "revoke_user_sessions",
	"ping",
}

// Wrap returns st measured into reg.
func Wrap(st store.Store, reg prometheus.Registerer) (*Store, error) {
	s := &Store{
		Store: st,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_store_operation_duration_seconds",
			Help:    "Latency of store operations (one Redis round trip each, retries included).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_store_errors_total",
			Help: "Store operations that failed because the store could not answer (unreachable, timed out).",
		}, []string{"operation"}),
	}
	if err := reg.Register(s.duration); err != nil {
		return nil, err
	}
	if err := reg.Register(s.errors); err != nil {
		return nil, err
	}
	for _, op := range operations {
		s.errors.WithLabelValues(op)
	}
	return s, nil
}

// Unwrap returns the measured store.
func (s *Store) Unwrap() store.Store { return s.Store }

// answers are errors that are a store's answer, not its failure.
var answers = []error{
	store.ErrNotFound, store.ErrConflict, store.ErrTokenUnknown, store.ErrTokenExpired, store.ErrTokenRevoked,
	store.ErrTokenReused, store.ErrClientMismatch, store.ErrUserInactive, store.ErrScopeWidened,
	context.Canceled,
}

// measure records one call; deferred with a pointer to the call's error.
func (s *Store) measure(op string, start time.Time, errp *error) {
	s.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	err := *errp
	if err == nil {
		return
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return
		}
	}
	s.errors.WithLabelValues(op).Inc()
}

// CreateUser calls the wrapped store's CreateUser, measured as "create_user".
func (s *Store) CreateUser(ctx context.Context, u store.User) (err error) {
	defer s.measure("create_user", time.Now(), &err)
	return s.Store.CreateUser(ctx, u)
}

// User calls the wrapped store's User, measured as "user".
func (s *Store) User(ctx context.Context, id string) (_ store.User, err error) {
	defer s.measure("user", time.Now(), &err)
	return s.Store.User(ctx, id)
}

// UserByName calls the wrapped store's UserByName, measured as "user_by_name".
func (s *Store) UserByName(ctx context.Context, username string) (_ store.User, err error) {
	defer s.measure("user_by_name", time.Now(), &err)
	return s.Store.UserByName(ctx, username)
}

// ListUsers calls the wrapped store's ListUsers, measured as "list_users".
func (s *Store) ListUsers(ctx context.Context) (_ []store.User, err error) {
	defer s.measure("list_users", time.Now(), &err)
	return s.Store.ListUsers(ctx)
}

// UpdateUser calls the wrapped store's UpdateUser, measured as "update_user".
func (s *Store) UpdateUser(ctx context.Context, u store.User) (err error) {
	defer s.measure("update_user", time.Now(), &err)
	return s.Store.UpdateUser(ctx, u)
}

// SetUserDisabled calls the wrapped store's SetUserDisabled, measured as "set_user_disabled".
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) (err error) {
	defer s.measure("set_user_disabled", time.Now(), &err)
	return s.Store.SetUserDisabled(ctx, id, disabled, now)
}

// DeleteUser calls the wrapped store's DeleteUser, measured as "delete_user".
func (s *Store) DeleteUser(ctx context.Context, id string) (err error) {
	defer s.measure("delete_user", time.Now(), &err)
	return s.Store.DeleteUser(ctx, id)
}

// CreateClient calls the wrapped store's CreateClient, measured as "create_client".
func (s *Store) CreateClient(ctx context.Context, c store.Client) (err error) {
	defer s.measure("create_client", time.Now(), &err)
	return s.Store.CreateClient(ctx, c)
}

// Client calls the wrapped store's Client, measured as "client".
func (s *Store) Client(ctx context.Context, id string) (_ store.Client, err error) {
	defer s.measure("client", time.Now(), &err)
	return s.Store.Client(ctx, id)
}

// ListClients calls the wrapped store's ListClients, measured as "list_clients".
func (s *Store) ListClients(ctx context.Context) (_ []store.Client, err error) {
	defer s.measure("list_clients", time.Now(), &err)
	return s.Store.ListClients(ctx)
}

// UpdateClient calls the wrapped store's UpdateClient, measured as "update_client".
func (s *Store) UpdateClient(ctx context.Context, c store.Client) (err error) {
	defer s.measure("update_client", time.Now(), &err)
	return s.Store.UpdateClient(ctx, c)
}

// DeleteClient calls the wrapped store's DeleteClient, measured as "delete_client".
func (s *Store) DeleteClient(ctx context.Context, id string) (err error) {
	defer s.measure("delete_client", time.Now(), &err)
	return s.Store.DeleteClient(ctx, id)
}

// CreateSession calls the wrapped store's CreateSession, measured as "create_session".
func (s *Store) CreateSession(ctx context.Context, n store.NewSession) (_ []string, err error) {
	defer s.measure("create_session", time.Now(), &err)
	return s.Store.CreateSession(ctx, n)
}

// Rotate calls the wrapped store's Rotate, measured as "rotate".
func (s *Store) Rotate(ctx context.Context, r store.Rotation) (_ store.Rotated, err error) {
	defer s.measure("rotate", time.Now(), &err)
	return s.Store.Rotate(ctx, r)
}

// Logout calls the wrapped store's Logout, measured as "logout".
func (s *Store) Logout(ctx context.Context, l store.Logout) (_ store.Session, err error) {
	defer s.measure("logout", time.Now(), &err)
	return s.Store.Logout(ctx, l)
}

// Session calls the wrapped store's Session, measured as "session".
func (s *Store) Session(ctx context.Context, userID, sessionID string) (_ store.Session, err error) {
	defer s.measure("session", time.Now(), &err)
	return s.Store.Session(ctx, userID, sessionID)
}

// ListSessions calls the wrapped store's ListSessions, measured as "list_sessions".
func (s *Store) ListSessions(ctx context.Context, userID string, now time.Time) (_ []store.Session, err error) {
	defer s.measure("list_sessions", time.Now(), &err)
	return s.Store.ListSessions(ctx, userID, now)
}

// RevokeSession calls the wrapped store's RevokeSession, measured as "revoke_session".
func (s *Store) RevokeSession(ctx context.Context, userID, sessionID, reason string, now time.Time) (err error) {
	defer s.measure("revoke_session", time.Now(), &err)
	return s.Store.RevokeSession(ctx, userID, sessionID, reason, now)
}

// RevokeUserSessions calls the wrapped store's RevokeUserSessions, measured as "revoke_user_sessions".
func (s *Store) RevokeUserSessions(ctx context.Context, userID, except, reason string, now time.Time) (err error) {
	defer s.measure("revoke_user_sessions", time.Now(), &err)
	return s.Store.RevokeUserSessions(ctx, userID, except, reason, now)
}

// Ping calls the wrapped store's Ping, measured as "ping".
func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.measure("ping", time.Now(), &err)
	return s.Store.Ping(ctx)
}
