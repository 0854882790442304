package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/token"
)

func (c *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the JWT signing keys and the refresh keys"}
	cmd.AddCommand(c.keysGenerateCmd(), c.keysRotateCmd(), c.keysListCmd())
	return cmd
}

// keyOptions are what a keys command works with: the configuration, the
// key directory (--dir, or JWT_KEYS_DIR) and the algorithm of a new
// signing key (--alg, or JWT_SIGNING_ALG).
type keyOptions struct {
	cfg      config.Config
	dir, alg string
}

// keysCommand completes cmd, a keys command: it takes --dir (and --alg
// with withAlg) and runs run with the options resolved.
func (c *cli) keysCommand(cmd *cobra.Command, withAlg bool, run func(keyOptions) error) *cobra.Command {
	var flags keyOptions
	cmd.Args = cobra.NoArgs
	cmd.Flags().StringVar(&flags.dir, "dir", "", "key directory (default JWT_KEYS_DIR)")
	if withAlg {
		cmd.Flags().StringVar(&flags.alg, "alg", "", "ES256, EdDSA or RS256, in any case (default JWT_SIGNING_ALG)")
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		cfg, err := c.load()
		if err != nil {
			return err
		}
		o := keyOptions{cfg: cfg, dir: cmp.Or(flags.dir, cfg.KeysDir), alg: cfg.SigningAlg}
		if o.dir == "" {
			return errors.New("--dir is required (or set JWT_KEYS_DIR)")
		}
		if flags.alg != "" {
			if o.alg, err = config.SigningAlg(flags.alg); err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
		}
		return run(o)
	}
	return cmd
}

func (c *cli) keysGenerateCmd() *cobra.Command {
	return c.keysCommand(&cobra.Command{
		Use:   "generate [--dir DIR] [--alg ES256|EdDSA|RS256]",
		Short: "Generate a signing key into DIR (default JWT_KEYS_DIR), and a refresh key if DIR has none",
		Long: `Generate a signing key into the key directory, and a refresh key if it has
none: what a new directory needs. In a directory that has keys the new
signing key is pending — published, not signing yet — until the time it
prints, as after keys rotate --only signing.`,
	}, true, func(o keyOptions) error {
		_, err := addKeys(c.stdout, o, "generated", always, ifNone, false)
		return err
	})
}

func (c *cli) keysRotateCmd() *cobra.Command {
	var only string
	var prune bool
	cmd := c.keysCommand(&cobra.Command{
		Use:   "rotate [--dir DIR] [--alg ES256|EdDSA|RS256] [--only signing|refresh]",
		Short: "Add a signing key and a refresh key that take over after their delays; prune expired keys",
		Long: `Add a signing key and a refresh key to the key directory shared by every
replica (--only signing or --only refresh adds just one).

The new signing key is published in the JWKS as soon as the replicas re-read
the directory (JWT_KEYS_RELOAD_INTERVAL) and starts signing
JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL after its timestamp; the key it
replaces stops signing then and stays published until every token it signed
has expired (JWT_ACCESS_EXPIRES_IN + 30s leeway).

The new refresh key is used for new sessions JWT_KEYS_RELOAD_INTERVAL after
its timestamp, once every replica can verify its tokens. A session keeps the
refresh key it started with, so the key it replaces stays usable until every
session that started with it has expired (JWT_REFRESH_EXPIRES_IN + 30s).

In a directory without a key of a kind, the new key is used at once.
Key files whose keys have expired are deleted (--prune=false keeps them).

Run it with the configuration the servers use (e.g. docker compose run
--rm --no-deps tokend keys rotate), since the times follow from it.`,
	}, true, func(o keyOptions) error {
		signing, refresh := always, always
		switch only {
		case "":
		case keys.Signing.Name():
			refresh = never
		case keys.Refresh.Name():
			signing = never
		default:
			return fmt.Errorf("--only must be signing or refresh, not %q", only)
		}
		_, err := addKeys(c.stdout, o, "added", signing, refresh, prune)
		return err
	})
	cmd.Flags().StringVar(&only, "only", "", "rotate only the signing keys (signing) or only the refresh keys (refresh)")
	cmd.Flags().BoolVar(&prune, "prune", true, "delete the files of expired keys")
	return cmd
}

// keyLifetimes is what every replica derives the schedules of both kinds
// of key from (keys.Signing.Timing, keys.Refresh.Timing; docs/design.md,
// "Signing keys and rotation", "Refresh keys"): the configuration, so the
// CLI must run with the servers' configuration.
func keyLifetimes(cfg config.Config) keys.Lifetimes {
	return keys.Lifetimes{
		Reload: cfg.KeysReloadInterval, JWKSMaxAge: cfg.JWKSMaxAge,
		Access: cfg.AccessTTL, Refresh: cfg.RefreshTTL, Leeway: token.AccessLeeway,
	}
}

// want says when addKeys adds a key of a kind.
type want int

const (
	never  want = iota
	ifNone      // when the directory has no key of the kind that can sign
	always
)

// addKeys adds to o.dir a signing key of o.alg and a refresh key as
// signing and refresh say — `keys generate`, `keys rotate` and
// JWT_KEYS_GENERATE all add keys through it — and tells w, for each new
// key, what it wrote, what state the key is in and when it is used, with
// verb ("generated", "added"). With prune it then deletes the files of
// expired keys. It reads every key file first, so a bad one stops it
// before it writes anything; a directory that does not exist is made. It
// reports whether it added a key.
func addKeys(w io.Writer, o keyOptions, verb string, signing, refresh want, prune bool) (added bool, err error) {
	l, now := keyLifetimes(o.cfg), time.Now()
	sts, err := keys.Signing.Status(o.dir, keys.Signing.Timing(l), now)
	if err != nil && !noKeyDir(err) {
		return false, err
	}
	rsts, err := keys.Refresh.Status(o.dir, keys.Refresh.Timing(l), now)
	if err != nil && !noKeyDir(err) {
		return false, err
	}
	if signing == always || signing == ifNone && !anyActive(sts) {
		k, err := keys.Generate(o.alg)
		if err != nil {
			return false, err
		}
		if err := addKey(w, o, verb, prune, keys.Signing, k, signingWords(o.cfg)); err != nil {
			return false, err
		}
		added = true
	}
	if refresh == always || refresh == ifNone && !anyActive(rsts) {
		if err := addKey(w, o, verb, prune, keys.Refresh, keys.GenerateRefreshKey(), refreshWords); err != nil {
			return added, err
		}
		added = true
	}
	return added, nil
}

// noKeyDir reports whether err says the key directory does not exist.
func noKeyDir(err error) bool {
	var miss *keys.MissingKeysError
	return errors.As(err, &miss) && miss.NoDir
}

// anyActive reports whether one of sts is active: whether the keys have
// one that can sign (see keys.Schedule).
func anyActive[K any](sts []keys.Status[K]) bool {
	return slices.ContainsFunc(sts, func(st keys.Status[K]) bool { return st.State == keys.StateActive })
}

// keyWords is how the CLI tells of a key of one kind that it added.
type keyWords[K keys.KeyType] struct {
	name     func(K) (kid, what string) // its kid, and what it is ("ES256 key", "refresh key")
	active   string                     // the new key is used at once
	pending  string                     // when the new key is used: a format of its state, the time, how long until then
	replaced string                     // a key it replaces: a format of its state, kid, when it stops being used, when it goes
	removed  string                     // a format of the path of a file deleted by pruning
}

// signingWords says when a new signing key signs and until when the keys
// it replaces do.
func signingWords(cfg config.Config) keyWords[*keys.Key] {
	return keyWords[*keys.Key]{
		name:     func(k *keys.Key) (string, string) { return k.ID, k.Alg + " key" },
		active:   "it is active: it signs at once (the directory has no other key that can sign)",
		pending:  "it is %s: published within " + config.FormatDuration(cfg.KeysReloadInterval) + "; signs from %s (in %s)",
		replaced: "%s key %s signs until %s and stays published until %s",
		removed:  "removed expired key file %s",
	}
}

// refreshWords says when new sessions use a new refresh key and until when
// the keys it replaces verify their sessions.
var refreshWords = keyWords[*keys.RefreshKey]{
	name:     func(k *keys.RefreshKey) (string, string) { return k.ID, "refresh key" },
	active:   "it is active: new sessions use it at once (the directory has no other refresh key)",
	pending:  "it is %s: new sessions use it from %s (in %s)",
	replaced: "%s refresh key %s is used for new sessions until %s and verifies its sessions until %s",
	removed:  "removed expired refresh key file %s",
}

// addKey adds k, a key of kind kd, to o.dir (pruning with prune) and tells
// w, in words, what it wrote, the new key's state and when it is used, and
// until when the keys it replaces are.
func addKey[K keys.KeyType, S any](w io.Writer, o keyOptions, verb string, prune bool, kd keys.Kind[K, S], k K, words keyWords[K]) error {
	t := kd.Timing(keyLifetimes(o.cfg))
	path, removed, err := kd.Add(o.dir, k, t, time.Now, prune)
	if err != nil {
		return err
	}
	now := time.Now()
	sts, err := kd.Status(o.dir, t, now)
	if err != nil {
		return err
	}
	kid, what := words.name(k)
	fmt.Fprintf(w, "%s %s %s\nwrote %s\n", verb, what, kid, path)
	for _, st := range sts { // the new key first
		switch id, _ := words.name(st.Key); {
		case id != kid:
		case st.State == keys.StateActive:
			fmt.Fprintln(w, words.active)
		default:
			fmt.Fprintf(w, words.pending+"\n", st.State, fmtTime(st.SignsFrom), fmtIn(st.SignsFrom, now))
		}
	}
	for _, st := range sts { // then the keys it replaces
		if id, _ := words.name(st.Key); id != kid && (st.State == keys.StateActive || st.State == keys.StatePending) {
			fmt.Fprintf(w, words.replaced+"\n", st.State, id, fmtTime(st.SignsUntil), fmtTime(st.DroppedAt))
		}
	}
	for _, p := range removed {
		fmt.Fprintf(w, words.removed+"\n", p)
	}
	return nil
}

// generateMissingKeys is JWT_KEYS_GENERATE: it adds to JWT_KEYS_DIR, as
// `tokend keys generate` does, a key of each kind the directory has none
// of — both to a new or empty directory, nothing once it has both, so a
// restart adds nothing. Only key files count: a README, a .gitkeep or
// lost+found do not make a directory "not empty".
func generateMissingKeys(cfg config.Config, log *slog.Logger) error {
	var out strings.Builder
	o := keyOptions{cfg: cfg, dir: cfg.KeysDir, alg: cfg.SigningAlg}
	added, err := addKeys(&out, o, "generated", ifNone, ifNone, false)
	if err != nil {
		return fmt.Errorf("JWT_KEYS_GENERATE: %w", err)
	}
	if added {
		log.Info("JWT_KEYS_GENERATE: generated the keys JWT_KEYS_DIR had none of (as `tokend keys generate` does)",
			slog.String("dir", cfg.KeysDir), slog.String("output", strings.TrimSpace(out.String())))
	}
	return nil
}

// keysFix adds to a *keys.MissingKeysError the command that makes what
// is missing (keysFixText); other errors are returned as they are.
func keysFix(err error) error {
	if fix := keysFixText(err); fix != "" {
		return fmt.Errorf("%w: %s", err, fix)
	}
	return err
}

// keysFixText is what makes good a *keys.MissingKeysError: the command
// that adds the missing kinds, or JWT_KEYS_GENERATE; "" for another error.
func keysFixText(err error) string {
	var miss *keys.MissingKeysError
	if !errors.As(err, &miss) {
		return ""
	}
	fix := addKeysCommand(miss.Dir, miss.Kinds...)
	if miss.NoDir {
		fix = addKeysCommand(miss.Dir)
	}
	return "run `" + fix + "`, or set JWT_KEYS_GENERATE=true to have `tokend serve` make the missing keys at start-up"
}

// addKeysCommand is the command that adds a key of each of kinds to dir:
// `keys rotate --only` for one kind, `keys generate` for both (no kinds:
// both).
func addKeysCommand(dir string, kinds ...string) string {
	if len(kinds) == 1 {
		return "tokend keys rotate --only " + kinds[0] + " --dir " + dir
	}
	return "tokend keys generate --dir " + dir
}

func (c *cli) keysListCmd() *cobra.Command {
	return c.keysCommand(&cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "Show each signing and refresh key's state (pending, active, retired, expired) and times",
	}, false, func(o keyOptions) error {
		l, now := keyLifetimes(o.cfg), time.Now()
		t, rt := keys.Signing.Timing(l), keys.Refresh.Timing(l)
		sts, err := keys.Signing.Status(o.dir, t, now)
		if err != nil {
			return keysFix(err)
		}
		rsts, err := keys.Refresh.Status(o.dir, rt, now)
		if err != nil {
			return keysFix(err)
		}
		fmt.Fprintf(c.stdout, "pre-publication %s (JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL); published %s after retiring (JWT_ACCESS_EXPIRES_IN + leeway)\n",
			config.FormatDuration(t.PrePublish), config.FormatDuration(t.RetireAfter))
		if !anyActive(sts) {
			fmt.Fprintf(c.stdout, "no key that can sign: `tokend serve` needs one (%s)\n", addKeysCommand(o.dir, keys.Signing.Name()))
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tSIGNS UNTIL\tDROPPED AT")
		for i := len(sts) - 1; i >= 0; i-- { // newest first
			st := sts[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Key.ID, st.Key.Alg, st.State,
				fmtTime(st.Key.Created), fmtTime(st.SignsFrom), fmtTime(st.SignsUntil), fmtTime(st.DroppedAt))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "\nrefresh keys: used for new sessions %s after they appear (JWT_KEYS_RELOAD_INTERVAL); usable %s after replaced (JWT_REFRESH_EXPIRES_IN + leeway)\n",
			config.FormatDuration(rt.PrePublish), config.FormatDuration(rt.RetireAfter))
		if len(rsts) == 0 {
			fmt.Fprintf(c.stdout, "none: `tokend serve` needs one (%s)\n", addKeysCommand(o.dir, keys.Refresh.Name()))
			return nil
		}
		tw = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REFRESH KID\tSTATE\tCREATED\tNEW SESSIONS FROM\tNEW SESSIONS UNTIL\tDROPPED AT")
		for i := len(rsts) - 1; i >= 0; i-- { // newest first
			st := rsts[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Key.ID, st.State,
				fmtTime(st.Key.Created), fmtTime(st.SignsFrom), fmtTime(st.SignsUntil), fmtTime(st.DroppedAt))
		}
		return tw.Flush()
	})
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtIn is how long from now until t, to the second.
func fmtIn(t, now time.Time) string {
	return config.FormatDuration(t.Sub(now).Round(time.Second))
}

// healthcheckCmd probes the local /healthz, for container health checks in
// images without curl.
func (c *cli) healthcheckCmd() *cobra.Command {
	return &cobra.Command{
		Use: "healthcheck", Short: "Exit 0 when the local tokend answers /healthz", Args: cobra.NoArgs, Hidden: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			addr, err := config.LocalAddr(cfg.HTTPAddr)
			if err != nil {
				return fmt.Errorf("HTTP_ADDR: %w", err)
			}
			hc := &http.Client{Timeout: 3 * time.Second}
			resp, err := hc.Get("http://" + addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthz answered %s", resp.Status)
			}
			return nil
		},
	}
}
