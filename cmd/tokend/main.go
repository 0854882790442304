// Command tokend is the tokend OAuth2 token service and its admin CLI
// (docs/operations.md): serve, users, clients, sessions, keys, doctor,
// config, version.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdin, os.Stdout, os.Stderr, os.Environ()).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokend:", err)
		os.Exit(1)
	}
}

// cli carries what every command needs; nothing is global.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	configFile     string
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer, environ []string) *cobra.Command {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, environ: environ}
	root := &cobra.Command{
		Use:           "tokend",
		Short:         "tokend is an OAuth2 token service with rotating refresh tokens",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&c.configFile, "config", "", "optional YAML file with the same keys as the environment variables")
	root.AddCommand(
		c.serveCmd(), c.usersCmd(), c.clientsCmd(), c.sessionsCmd(), c.keysCmd(),
		c.configCmd(), c.versionCmd(), c.healthcheckCmd(), c.doctorCmd(),
	)
	refuseUnknownSubcommands(root)
	showUsageOnArgErrors(root)
	return root
}

// showUsageOnArgErrors makes every command given the wrong arguments
// (`tokend users create` without a name) say so with its usage: the root
// silences cobra's usage for the other errors, where it would only hide
// the message (a Redis outage is no reason to print the flags).
func showUsageOnArgErrors(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		showUsageOnArgErrors(sub)
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return fmt.Errorf("%w\n\n%s", err, strings.TrimRight(cmd.UsageString(), "\n"))
			}
			return nil
		}
	}
}

// refuseUnknownSubcommands makes every command group (users, clients, ...)
// fail on an unknown subcommand: cobra would print the group's help and
// exit 0, so a typo in a script (`tokend users frobnicate`) looked like
// success. A group given no subcommand still prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if cmd.HasParent() && cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return fmt.Errorf("unknown command %q for %q (run '%s --help' for the commands)", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
	}
}

func (c *cli) load() (config.Config, error) {
	return config.Load(c.configFile, c.environ)
}

func (c *cli) logger(cfg config.Config) *slog.Logger {
	return newLogger(c.stderr, cfg.LogLevel, cfg.LogFormat)
}

// newLogger is tokend's log/slog logger. Durations are written for people:
// slog's JSON handler would write nanoseconds ("duration":16003931), so a
// duration becomes milliseconds with the unit in the key
// ("duration_ms":16.004); the text format writes it rounded with its unit
// (duration=16.004ms).
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	text := format == config.LogFormatText
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() != slog.KindDuration {
			return a
		}
		d := a.Value.Duration()
		if text {
			return slog.String(a.Key, roundDuration(d).String())
		}
		return slog.Float64(a.Key+"_ms", math.Round(float64(d)/1e3)/1e3)
	}}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// roundDuration keeps about four significant digits: 16.003931ms is
// 16.004ms, 1m3.123456789s is 1m3.123s.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	default:
		return d
	}
}

// errNoRedis explains why admin commands need REDIS_URL.
var errNoRedis = errors.New("REDIS_URL is not set: the embedded store lives inside a running `tokend serve` and cannot be reached from another process; set REDIS_URL (e.g. redis://127.0.0.1:6379/0) to manage users, clients and sessions")

// adminStore opens the Redis store named by the configuration, as serve
// does (openBackend): session ends by the CLI (users disable, delete and
// set-password, sessions revoke) and client changes (clients delete,
// rotate-secret, update) reach resource servers and every replica like
// the server's.
func (c *cli) adminStore(ctx context.Context) (store.Store, config.Config, error) {
	b, cfg, err := c.adminBackend(ctx)
	if err != nil {
		return nil, cfg, err
	}
	return b.store, cfg, nil
}

// adminBackend is adminStore's backend, with the sign-in limiter next to
// the store.
func (c *cli) adminBackend(ctx context.Context) (*backend, config.Config, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, cfg, err
	}
	if cfg.RedisURL == "" {
		return nil, cfg, errNoRedis
	}
	b, err := openBackend(ctx, cfg, c.logger(cfg), nil, 0) // an admin command tries once
	if err != nil {
		return nil, cfg, err
	}
	return b, cfg, nil
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.stdout, "tokend", version)
			return err
		},
	}
}

func (c *cli) configCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration, secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			for _, s := range cfg.Settings() {
				fmt.Fprintf(c.stdout, "%s=%s\n", s.Name, s.Value)
			}
			return nil
		},
	}
}
