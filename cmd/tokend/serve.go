package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/clientcache"
	"github.com/tokend/tokend/token"
)

func (c *cli) serveCmd() *cobra.Command {
	var dev bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the token service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if dev && cfg.RedisURL != "" {
				return errors.New("--dev seeds demo data into the embedded store; unset REDIS_URL to use it")
			}
			return c.serve(cmd.Context(), cfg, dev)
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "development mode: embedded store seeded with a demo user and client")
	return cmd
}

// serverKeys are the key sources serve runs with.
type serverKeys struct {
	signing token.KeySource
	refresh token.RefreshKeySource
	run     func(context.Context) // follows JWT_KEYS_DIR until ctx ends
}

// loadKeys makes an ephemeral signing key and an ephemeral refresh key, and
// says so, when JWT_KEYS_DIR is not set. Otherwise it returns a source that
// follows the directory: every replica re-reads it every
// JWT_KEYS_RELOAD_INTERVAL (in run, until ctx ends) and derives from the
// file names and the clock which signing key signs and which refresh key
// new sessions use. The directory must hold both kinds.
func loadKeys(cfg config.Config, log *slog.Logger) (serverKeys, error) {
	if cfg.KeysDir == "" {
		set, err := keys.Ephemeral(cfg.SigningAlg)
		if err != nil {
			return serverKeys{}, err
		}
		log.Warn("JWT_KEYS_DIR is not set: signing with an ephemeral key; tokens become invalid on restart and replicas cannot verify each other's tokens (development only)",
			slog.String("kid", set.Signing().ID), slog.String("alg", set.Signing().Alg))
		rset := keys.EphemeralRefresh()
		log.Warn("JWT_KEYS_DIR is not set: refresh tokens are derived from an ephemeral refresh key; every session ends on restart and replicas cannot refresh each other's sessions (development only)",
			slog.String("refresh_kid", rset.Current().ID))
		return serverKeys{token.StaticKeys{Set: set}, token.StaticRefreshKeys{Set: rset}, func(context.Context) {}}, nil
	}
	ds, err := keys.NewDirSource(cfg.KeysDir, keys.DirOptions{
		Timing: keyTiming(cfg), RefreshTiming: refreshKeyTiming(cfg), RequireRefreshKeys: true,
		ReloadInterval: cfg.KeysReloadInterval, Logger: log,
	})
	if err != nil {
		return serverKeys{}, fmt.Errorf("JWT_KEYS_DIR: %w", err)
	}
	k := ds.Keys().Signing()
	log.Info("signing keys loaded", slog.String("dir", cfg.KeysDir), slog.String("kid", k.ID), slog.String("alg", k.Alg),
		slog.Int("published", len(ds.Keys().Keys())), slog.Duration("reload_interval", cfg.KeysReloadInterval))
	log.Info("refresh keys loaded", slog.String("dir", cfg.KeysDir), slog.String("refresh_kid", ds.RefreshKeys().Current().ID),
		slog.Int("usable", len(ds.RefreshKeys().Keys())))
	if k.Alg != cfg.SigningAlg {
		log.Warn("the active signing key's algorithm differs from JWT_SIGNING_ALG; the keys in JWT_KEYS_DIR decide (JWT_SIGNING_ALG is the default for new keys)",
			slog.String("kid", k.ID), slog.String("alg", k.Alg), slog.String("JWT_SIGNING_ALG", cfg.SigningAlg))
	}
	return serverKeys{ds, ds, ds.Run}, nil
}

func (c *cli) serve(ctx context.Context, cfg config.Config, dev bool) error {
	log := c.logger(cfg)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	ready, err := checkRedis(ctx, st, cfg, log)
	if err != nil {
		return err
	}
	if cfg.Bootstrap != "" {
		f, err := loadBootstrap(cfg.Bootstrap)
		if err != nil {
			return err
		}
		if err := applyBootstrap(ctx, f, st, adminHasher(cfg), c.environ, log); err != nil {
			return err
		}
	}
	if cfg.KeysGenerate && cfg.KeysDir != "" {
		if err := generateKeysIfEmpty(cfg.KeysDir, cfg.SigningAlg, log); err != nil {
			return err
		}
	}
	evlog := eventLog(cfg, st) // before instrument: it needs the Redis store itself
	st, limiter, reg, err := instrument(cfg, st, log)
	if err != nil {
		return err
	}
	// Every session end becomes a revocation event (package events); this
	// replica's hub follows the log for GET /events and its client cache.
	lost := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokend_events_lost_total",
		Help: "Revocation events (session ends, client deletions and updates) that could not be appended to the event log.",
	})
	reg.MustRegister(lost)
	st = events.Wrap(st, evlog, events.Options{AccessTTL: cfg.AccessTTL, Logger: log, Lost: lost.Inc})
	hub := events.NewHub(evlog, events.HubOptions{Issuer: cfg.Issuer, Logger: log})
	cached := clientcache.Wrap(st, cfg.ClientCacheTTL)
	if cc, ok := cached.(*clientcache.Store); ok {
		// A client deleted or updated through any replica or the CLI
		// leaves this replica's cache as soon as the hub reads the event.
		hub.OnEvent(func(e events.Event) {
			if e.Kind == events.KindClient || e.Kind == events.KindClientUpdated {
				cc.Forget(e.Client)
			}
		})
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	defer stopHub()
	go hub.Run(hubCtx)
	ks, err := loadKeys(cfg, log)
	if err != nil {
		return err
	}
	keysCtx, stopKeys := context.WithCancel(ctx)
	defer stopKeys()
	go ks.run(keysCtx)
	hasher := credential.NewHasher(cfg.Argon2(), 0)
	srv, err := server.New(server.Options{
		Store: cached, Tokens: token.NewIssuer(cfg.Issuer, cfg.Audience, cfg.AccessTTL, ks.signing),
		Keys: ks.signing, RefreshKeys: ks.refresh,
		Passwords: hasher, Logger: log, Issuer: cfg.Issuer, RefreshTTL: cfg.RefreshTTL, ReuseWindow: cfg.ReuseWindow, MaxSessions: cfg.MaxSessionsPerUser,
		CORSAllowedOrigins: cfg.CORSAllowedOrigins,
		JWKSMaxAge:         cfg.JWKSMaxAge, AllowSignup: cfg.AllowSignup,
		LoginLimiter: limiter, TrustedProxies: cfg.TrustedProxies, Metrics: reg, Ready: ready,
		Events: hub,
	})
	if err != nil {
		return err
	}
	if dev {
		if err := seedDev(ctx, st, hasher); err != nil {
			return fmt.Errorf("seed dev data: %w", err)
		}
	}

	if cfg.DebugAddr != "" {
		debugCtx, stopDebug := context.WithCancel(ctx)
		defer stopDebug()
		if _, err := startDebug(debugCtx, cfg.DebugAddr, log); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(srv.CloseStreams) // GET /events streams never end by themselves
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("tokend listening", slog.String("addr", ln.Addr().String()), slog.String("version", version),
		slog.String("issuer", cfg.Issuer), slog.Any("audience", cfg.Audience))
	if cfg.IssuerDerived {
		log.Info("JWT_ISSUER is not set: the issuer is derived from HTTP_ADDR; set JWT_ISSUER to the URL clients use when it differs",
			slog.String("issuer", cfg.Issuer))
	}
	if cfg.AudienceDefaulted {
		log.Info("JWT_AUDIENCE is not set: access tokens carry the issuer URL as their audience (RFC 9068 §3 default resource)",
			slog.String("aud", cfg.Issuer))
	}
	if dev {
		printDevBanner(c.stdout, ln.Addr().String())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests", slog.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// Demo data for `tokend serve --dev` (embedded store only).
const (
	devUser     = "demo"
	devPassword = "demo-password"
	devClient   = "demo-app"
)

func seedDev(ctx context.Context, st store.Store, h *credential.Hasher) error {
	hash, err := h.Hash(ctx, devPassword)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := st.CreateUser(ctx, store.User{ID: token.NewID(), Username: devUser, PasswordHash: hash, Roles: []string{"admin"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		return err
	}
	return st.CreateClient(ctx, store.Client{ID: devClient, Public: true, Grants: []string{"password", "refresh_token"}, Scopes: []string{"read", "write"}, CreatedAt: now})
}
