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
	"github.com/tokend/tokend/keys"
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

// Options configure a Server. Store, Tokens, Keys, Passwords and Logger are
// required.
type Options struct {
	Store  store.Store
	Tokens *token.Issuer   // signs and verifies access tokens
	Keys   token.KeySource // published keys for the JWKS document
	// RefreshKeys are the keys refresh tokens are derived from (serve: the
	// *.refresh files of JWT_KEYS_DIR). Nil means an ephemeral key of this
	// Server's own, with a warning: its refresh tokens die with it.
	RefreshKeys token.RefreshKeySource
	Passwords   PasswordHasher // argon2id: *credential.Hasher
	Logger      *slog.Logger

	Issuer     string        // the issuer URL, for metadata
	RefreshTTL time.Duration // absolute session lifetime [24h]
	JWKSMaxAge time.Duration // Cache-Control max-age of the JWKS [5m]
	// ReuseWindow is REFRESH_REUSE_WINDOW: for how long after a rotation
	// the token just rotated is answered with the same child (a retry, a
	// second tab). 0 is strict single use; the configuration's default is
	// 30s.
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

	// Ready is the readiness check of GET /readyz; nil means Store.Ping.
	// An error wrapping ErrStoreFull is reported as "out_of_memory".
	Ready func(ctx context.Context) error

	// Events, if set, serves the revocation feed GET /events from this
	// replica's hub (package events); nil answers 404 there.
	Events *events.Hub
	// EventsHeartbeat is how often an idle feed stream sends a heartbeat
	// [DefaultEventsHeartbeat].
	EventsHeartbeat time.Duration
	// EventsMaxStreams is how many feed streams one client may hold open
	// on this server at once; beyond it GET /events answers 429
	// [DefaultEventsMaxStreams].
	EventsMaxStreams int

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ErrStoreFull is what a readiness check returns (wrapped) when the store
// answers but refuses writes because it is out of memory (Redis at
// maxmemory under the noeviction policy).
var ErrStoreFull = errors.New("the store is out of memory")

// Server serves tokend's HTTP API.
type Server struct {
	store      store.Store
	tokens     *token.Issuer
	refresh    *token.Refresher
	verified   *token.VerifyCache // Verify with verified tokens remembered until they expire
	keys       token.KeySource
	passwords  PasswordHasher
	log        *slog.Logger
	issuer     string
	refreshTTL time.Duration
	jwksMaxAge time.Duration
	// reuseWindow is REFRESH_REUSE_WINDOW (0 = strict single use).
	reuseWindow time.Duration
	maxSessions int
	signup      bool
	limiter     LoginLimiter
	proxies     []netip.Prefix
	metrics     *metrics
	now         func() time.Time
	ready       func(ctx context.Context) error
	metadata    []byte
	handler     http.Handler
	mux         *router // the routes, for Routes
	origins     []string

	events           *events.Hub
	eventsHeartbeat  time.Duration
	eventsMaxStreams int
	streams          streamCounts  // open feed streams per client
	closing          chan struct{} // closed by CloseStreams
	closeOnce        sync.Once
}

// New checks the options and builds the server and its routes.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Tokens == nil || o.Keys == nil || o.Passwords == nil || o.Logger == nil {
		return nil, errors.New("server: Store, Tokens, Keys, Passwords and Logger are required")
	}
	if o.RefreshKeys == nil {
		set := keys.EphemeralRefresh()
		o.Logger.Warn("server: no refresh keys given: an ephemeral refresh key; refresh tokens die with this server",
			slog.String("refresh_kid", set.Current().ID))
		o.RefreshKeys = token.StaticRefreshKeys{Set: set}
	}
	if o.ReuseWindow < 0 || o.MaxSessions < 0 {
		return nil, errors.New("server: ReuseWindow and MaxSessions must not be negative")
	}
	s := &Server{
		store: o.Store, tokens: o.Tokens, refresh: token.NewRefresher(o.RefreshKeys), verified: token.NewVerifyCache(o.Tokens, 0),
		keys: o.Keys, passwords: o.Passwords, log: o.Logger,
		issuer: o.Issuer, refreshTTL: o.RefreshTTL, jwksMaxAge: o.JWKSMaxAge, now: o.Now,
		reuseWindow: o.ReuseWindow, maxSessions: o.MaxSessions,
		signup: o.AllowSignup, limiter: o.LoginLimiter, proxies: slices.Clone(o.TrustedProxies),
		origins: slices.Clone(o.CORSAllowedOrigins), ready: o.Ready,
		events: o.Events, eventsHeartbeat: o.EventsHeartbeat, eventsMaxStreams: o.EventsMaxStreams, closing: make(chan struct{}),
	}
	if s.ready == nil {
		s.ready = s.store.Ping
	}
	if s.eventsHeartbeat <= 0 {
		s.eventsHeartbeat = DefaultEventsHeartbeat
	}
	if s.eventsMaxStreams <= 0 {
		s.eventsMaxStreams = DefaultEventsMaxStreams
	}
	if s.refreshTTL <= 0 {
		s.refreshTTL = 24 * time.Hour
	}
	if s.jwksMaxAge <= 0 {
		s.jwksMaxAge = 5 * time.Minute
	}
	if s.now == nil {
		s.now = time.Now
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
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /events", s.handleEvents)
	mux.HandleFunc("GET /openapi.yaml", s.handleOpenAPI)
	mux.HandleFunc("GET /docs", s.handleDocs)
	mux.HandleFunc("GET /docs/{file}", s.handleDocsAsset)
	return s.observe(commonHeaders(withCORS(s.origins, mux)))
}

// storeErr maps an unexpected store error to a 503 (the store is
// unreachable or failing); a cancelled request stays a cancellation.
func storeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return unavailable(err)
}
