// Package server is tokend's HTTP surface (api/openapi.yaml): the OAuth2 token,
// revocation and introspection endpoints, logout, the discovery documents
// and health checks. It holds no state of its own; everything lives in a
// store.Store, so any number of replicas can serve the same clients.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// PasswordHasher hashes and checks user passwords; *credential.Hasher
// (argon2id) is the implementation.
type PasswordHasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
	// VerifyDummy spends the work of Verify on nothing, so that an unknown
	// username costs what a known one does.
	VerifyDummy(ctx context.Context, password string)
}

// Options configure a Server. New checks them and fills in nothing that
// has a configured value: the defaults are the configuration's
// (docs/configuration.md); a field marked "required" that is missing or
// out of range is an error. The optional ones say what their zero value
// means.
type Options struct {
	Store  store.Store     // required
	Tokens *token.Issuer   // required: signs and verifies access tokens
	Keys   token.KeySource // required: published keys for the JWKS document
	// RefreshKeys are the keys refresh tokens are derived from (serve: the
	// *.refresh files of JWT_KEYS_DIR); required.
	RefreshKeys token.RefreshKeySource
	Passwords   PasswordHasher // required: argon2id, *credential.Hasher
	Logger      *slog.Logger   // required

	Issuer     string        // required: the issuer URL (JWT_ISSUER), for metadata
	RefreshTTL time.Duration // required, > 0: absolute session lifetime (JWT_REFRESH_EXPIRES_IN)
	JWKSMaxAge time.Duration // required, > 0: Cache-Control max-age of the JWKS (JWKS_MAX_AGE)
	// ReuseWindow is REFRESH_REUSE_WINDOW: for how long after a rotation
	// the token just rotated is answered with the same child (a retry, a
	// second tab). 0 is strict single use.
	ReuseWindow time.Duration
	// MaxSessions is the per-user session cap (store.NewSession.Max); 0
	// means store.DefaultMaxSessions.
	MaxSessions int

	// CORSAllowedOrigins are the browser origins allowed to call the
	// token, revocation, logout, signup and session endpoints (exact
	// origins, no wildcard); none means no CORS headers.
	CORSAllowedOrigins []string

	// AllowSignup enables self-registration (POST /users); without it
	// /users answers 404 like any unknown path.
	AllowSignup bool

	// LoginLimiter, if set, limits password sign-in attempts per account
	// and per client IP (package ratelimit); nil means no limit.
	LoginLimiter LoginLimiter
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed when working out the client's IP address; none by default.
	TrustedProxies []netip.Prefix
	// Metrics is the Prometheus registry the server registers its
	// collectors in and serves at GET /metrics; nil means a new registry
	// of the server's own (never the global default registry).
	Metrics *prometheus.Registry
	// MetricsElsewhere leaves GET /metrics out of Handler, which then
	// answers 404 there: serve MetricsHandler on a listener of its own
	// (METRICS_ADDR) that only the scraper reaches.
	MetricsElsewhere bool

	// Ready is the readiness check of GET /readyz; nil means Store.Ping.
	// An error wrapping ErrStoreFull is reported as "out_of_memory".
	Ready func(ctx context.Context) error

	// Events, if set, serves the revocation feed GET /events from this
	// replica's hub (package events); nil answers 404 there.
	Events *events.Hub
	// EventsHeartbeat is how often an idle feed stream sends a heartbeat;
	// 0 means DefaultEventsHeartbeat.
	EventsHeartbeat time.Duration
	// EventsMaxStreams is how many feed streams one client may hold open
	// on this server at once, beyond which GET /events answers 429; 0
	// means DefaultEventsMaxStreams.
	EventsMaxStreams int

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// check reports the first required option that is missing or out of
// range.
func (o *Options) check() error {
	for _, f := range []struct {
		problem string
		bad     bool
	}{
		{"Store is required", o.Store == nil},
		{"Tokens is required", o.Tokens == nil},
		{"Keys is required", o.Keys == nil},
		{"RefreshKeys is required", o.RefreshKeys == nil},
		{"Passwords is required", o.Passwords == nil},
		{"Logger is required", o.Logger == nil},
		{"Issuer is required", o.Issuer == ""},
		{"RefreshTTL must be positive", o.RefreshTTL <= 0},
		{"JWKSMaxAge must be positive", o.JWKSMaxAge <= 0},
		{"ReuseWindow must not be negative", o.ReuseWindow < 0},
		{"MaxSessions must not be negative", o.MaxSessions < 0},
		{"EventsHeartbeat must not be negative", o.EventsHeartbeat < 0},
		{"EventsMaxStreams must not be negative", o.EventsMaxStreams < 0},
	} {
		if f.bad {
			return errors.New("server: Options." + f.problem)
		}
	}
	return nil
}

// ErrStoreFull is what a readiness check returns (wrapped) when the store
// answers but refuses writes because it is out of memory (Redis at
// maxmemory under the noeviction policy).
var ErrStoreFull = errors.New("the store is out of memory")

// Server serves tokend's HTTP API.
type Server struct {
	o        Options            // as checked by New, the optional ones filled in
	refresh  *token.Refresher   // mints and verifies refresh tokens under o.RefreshKeys
	verified *token.VerifyCache // o.Tokens.Verify with verified tokens remembered until they expire
	metrics  *metrics
	metadata []byte
	handler  http.Handler
	mux      *router // the routes, for Routes

	streams   streamCounts  // open feed streams per client
	closing   chan struct{} // closed by CloseStreams
	closeOnce sync.Once
}

// New checks the options and builds the server and its routes.
func New(o Options) (*Server, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	o.TrustedProxies, o.CORSAllowedOrigins = slices.Clone(o.TrustedProxies), slices.Clone(o.CORSAllowedOrigins)
	if o.Ready == nil {
		o.Ready = o.Store.Ping
	}
	if o.EventsHeartbeat == 0 {
		o.EventsHeartbeat = DefaultEventsHeartbeat
	}
	if o.EventsMaxStreams == 0 {
		o.EventsMaxStreams = DefaultEventsMaxStreams
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		o: o, refresh: token.NewRefresher(o.RefreshKeys), verified: token.NewVerifyCache(o.Tokens, 0),
		closing: make(chan struct{}),
	}
	m, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.metrics = m
	md, err := s.buildMetadata()
	if err != nil {
		return nil, fmt.Errorf("server: metadata: %w", err)
	}
	s.metadata = md
	s.handler = s.routes()
	return s, nil
}

// CloseStreams ends every GET /events stream (they would otherwise keep a
// graceful shutdown waiting); consumers reconnect to another replica.
// Register it with http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// Handler returns the root HTTP handler with logging, request ids and panic
// recovery applied.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := newRouter() // an http.ServeMux that records its patterns for Routes
	s.mux = mux
	mux.HandleFunc("/oauth/token", s.handleToken)
	mux.HandleFunc("/oauth/revoke", s.handleRevoke)
	mux.HandleFunc("/oauth/introspect", s.handleIntrospect)
	mux.HandleFunc("/logout", s.handleLogout)
	mux.HandleFunc("/users", s.handleSignup)
	mux.HandleFunc("GET /sessions", s.handleListSessions)
	mux.HandleFunc("DELETE /sessions/{id}", s.handleDeleteSession)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleMetadata)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if !s.o.MetricsElsewhere {
		mux.HandleFunc("GET /metrics", s.handleMetrics)
	}
	mux.HandleFunc("GET /events", s.handleEvents)
	mux.HandleFunc("GET /openapi.yaml", s.handleOpenAPI)
	mux.HandleFunc("GET /docs", s.handleDocs)
	mux.HandleFunc("GET /docs/{file}", s.handleDocsAsset)
	return s.observe(commonHeaders(withCORS(s.o.CORSAllowedOrigins, mux)))
}

// storeErr maps an unexpected store error to a 503 (the store is
// unreachable or failing); a cancelled request stays a cancellation.
func storeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return unavailable(err)
}
