package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
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
		Long: `Run the token service.

tokend is configured by environment variables, or by a YAML file with the
same keys (--config FILE). ` + "`tokend config`" + ` prints the effective values, secrets
redacted; docs/configuration.md says what each one does and accepts.
The variables, with their defaults:

` + variablesHelp(),
		Args: cobra.NoArgs,
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

// variablesHelp lists the configuration variables and their defaults
// (config.Variables, the one list), for serve --help.
func variablesHelp() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, v := range config.Variables() {
		def := v.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", v.Name, def)
	}
	_ = tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// serverKeys are the key sources serve runs with.
type serverKeys struct {
	signing token.KeySource
	refresh token.RefreshKeySource
	run     func(context.Context) // follows JWT_KEYS_DIR until ctx ends
}

// loadKeys makes an ephemeral signing key and an ephemeral refresh key, and
// says so, when JWT_KEYS_DIR is not set. Otherwise it returns a source that
// follows the directory (openKeyDir): every replica re-reads it every
// JWT_KEYS_RELOAD_INTERVAL (in run, until ctx ends) and derives from the
// file names and the clock which signing key signs and which refresh key
// new sessions use. The directory must hold both kinds; what keyFindings
// finds wrong with it is logged.
func loadKeys(ctx context.Context, cfg config.Config, log *slog.Logger) (serverKeys, error) {
	if cfg.KeysDir == "" {
		set, err := keys.Ephemeral(cfg.SigningAlg)
		if err != nil {
			return serverKeys{}, err
		}
		rset := keys.EphemeralRefresh()
		err = logFindings(ctx, log, []finding{ephemeralKeys(slog.String("kid", set.Current().ID), slog.String("alg", set.Current().Alg),
			slog.String("refresh_kid", rset.Current().ID))})
		return serverKeys{token.StaticKeys{Set: set}, token.StaticRefreshKeys{Set: rset}, func(context.Context) {}}, err
	}
	ds, err := openKeyDir(cfg, log)
	if err != nil {
		return serverKeys{}, fmt.Errorf("JWT_KEYS_DIR: %w", keysFix(err))
	}
	k := ds.Keys().Current()
	log.Info("signing keys loaded", slog.String("dir", cfg.KeysDir), slog.String("kid", k.ID), slog.String("alg", k.Alg),
		slog.Int("published", len(ds.Keys().Keys())), slog.Duration("reload_interval", cfg.KeysReloadInterval))
	log.Info("refresh keys loaded", slog.String("dir", cfg.KeysDir), slog.String("refresh_kid", ds.RefreshKeys().Current().ID),
		slog.Int("usable", len(ds.RefreshKeys().Keys())))
	if err := logFindings(ctx, log, keyFindings(cfg, ds)); err != nil {
		return serverKeys{}, err
	}
	return serverKeys{ds, ds, ds.Run}, nil
}

// serve runs the token service until ctx ends, then drains requests for
// up to SHUTDOWN_TIMEOUT. Every step is a function of its own; the
// background work they start (event hub, key reloads, debug listener)
// ends with serve.
func (c *cli) serve(ctx context.Context, cfg config.Config, dev bool) error {
	log := c.logger(cfg)
	reg := newRegistry()
	b, err := openBackend(ctx, cfg, log, reg, cfg.RedisStartupWait)
	if err != nil {
		return err
	}
	defer b.close()
	ctx, stop := context.WithCancel(ctx) // the background work ends before the store closes
	defer stop()
	ready, err := checkRedis(ctx, b, cfg, log)
	if err != nil {
		return err
	}
	if err := c.provision(ctx, cfg, b.store, dev, log); err != nil {
		return err
	}
	ks, err := loadKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	go ks.run(ctx)
	hasher := credential.NewHasher(cfg.Argon2(), 0)
	srv, err := newServer(ctx, cfg, b, ks, hasher, ready, reg, log)
	if err != nil {
		return err
	}
	if dev {
		if err := seedDev(ctx, b.store, hasher); err != nil {
			return fmt.Errorf("seed dev data: %w", err)
		}
	}
	if cfg.DebugAddr != "" {
		if _, err := startDebug(ctx, cfg.DebugAddr, log); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" {
		if _, err := startSide(ctx, "METRICS_ADDR", cfg.MetricsAddr, srv.MetricsHandler(), log, slog.LevelInfo,
			"metrics listener on (METRICS_ADDR): GET /metrics is served there only, not on HTTP_ADDR; it has no authentication, keep it private"); err != nil {
			return err
		}
	}
	return c.listen(ctx, cfg, srv, log, dev)
}

// provision prepares what the configuration asks to exist before serving:
// the users and clients of the TOKEND_BOOTSTRAP file (where the committed
// development password is refused unless TOKEND_ALLOW_DEV_SECRETS or dev),
// and keys in an empty JWT_KEYS_DIR when JWT_KEYS_GENERATE is set.
func (c *cli) provision(ctx context.Context, cfg config.Config, st store.Store, dev bool, log *slog.Logger) error {
	if cfg.Bootstrap != "" {
		f, err := loadBootstrap(cfg.Bootstrap)
		if err != nil {
			return err
		}
		if err := applyBootstrap(ctx, f, st, adminHasher(cfg), c.environ, cfg.AllowDevSecrets || dev, log); err != nil {
			return err
		}
	}
	if cfg.KeysGenerate && cfg.KeysDir != "" {
		return generateMissingKeys(cfg, log)
	}
	return nil
}

// newServer builds the HTTP server on b, with this replica's event hub
// (following b's log until ctx ends: the GET /events feed, and the end of
// cached clients deleted or updated through any replica or the CLI) and
// client cache.
func newServer(ctx context.Context, cfg config.Config, b *backend, ks serverKeys, hasher *credential.Hasher,
	ready func(context.Context) error, reg *prometheus.Registry, log *slog.Logger) (*server.Server, error) {
	hub := events.NewHub(b.log, events.HubOptions{Issuer: cfg.Issuer, Logger: log})
	cache := clientcache.Wrap(b.store, cfg.ClientCacheTTL)
	hub.OnEvent(func(e events.Event) {
		if e.Kind == events.KindClient || e.Kind == events.KindClientUpdated {
			cache.Forget(e.Client)
		}
	})
	go hub.Run(ctx)
	log.Info("sign-in rate limits",
		slog.String("per_account", cfg.LoginRateAccount.String()), slog.String("per_account_ip", cfg.LoginRateAccountIP.String()),
		slog.String("per_ip", cfg.LoginRateIP.String()),
		slog.Int("trusted_proxies", len(cfg.TrustedProxies)))
	return server.New(server.Options{
		Store: cache, Tokens: token.NewIssuer(cfg.Issuer, cfg.Audience, cfg.AccessTTL, ks.signing),
		Keys: ks.signing, RefreshKeys: ks.refresh,
		Passwords: hasher, Logger: log, Issuer: cfg.Issuer, RefreshTTL: cfg.RefreshTTL, ReuseWindow: cfg.ReuseWindow, MaxSessions: cfg.MaxSessionsPerUser,
		CORSAllowedOrigins: cfg.CORSAllowedOrigins,
		JWKSMaxAge:         cfg.JWKSMaxAge, AllowSignup: cfg.AllowSignup,
		LoginLimiter: b.limiter, TrustedProxies: cfg.TrustedProxies, Metrics: reg, MetricsElsewhere: cfg.MetricsAddr != "", Ready: ready,
		Events: hub, EventsMaxStreams: cfg.EventsMaxStreams,
	})
}

// listen serves srv on HTTP_ADDR until ctx ends, then shuts down
// gracefully: new connections are refused, requests in flight get up to
// SHUTDOWN_TIMEOUT, and GET /events streams are ended.
func (c *cli) listen(ctx context.Context, cfg config.Config, srv *server.Server, log *slog.Logger, dev bool) error {
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
	logListening(cfg, ln.Addr().String(), log)
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

// logListening says where tokend listens, and which settings it derived.
func logListening(cfg config.Config, addr string, log *slog.Logger) {
	log.Info("tokend listening", slog.String("addr", addr), slog.String("version", version),
		slog.String("issuer", cfg.Issuer), slog.Any("audience", cfg.Audience))
	if cfg.IssuerDerived {
		log.Info("JWT_ISSUER is not set: the issuer is derived from HTTP_ADDR; set JWT_ISSUER to the URL clients use when it differs",
			slog.String("issuer", cfg.Issuer))
	}
	if cfg.AudienceDefaulted {
		log.Info("JWT_AUDIENCE is not set: access tokens carry the issuer URL as their audience (RFC 9068 §3 default resource)",
			slog.String("aud", cfg.Issuer))
	}
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
