package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
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
	var dir, alg string
	gen := &cobra.Command{
		Use:   "generate [--dir DIR] [--alg ES256|EdDSA|RS256]",
		Short: "Generate a signing key into DIR (default JWT_KEYS_DIR), and a refresh key if DIR has none",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if dir, err = keysDir(dir, cfg); err != nil {
				return err
			}
			if alg, err = signingAlg(alg, cfg); err != nil {
				return err
			}
			return generateKeys(c.stdout, dir, alg)
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for the key files (default JWT_KEYS_DIR)")
	gen.Flags().StringVar(&alg, "alg", "", "ES256, EdDSA or RS256, in any case (default JWT_SIGNING_ALG)")
	cmd.AddCommand(gen, c.keysRotateCmd(), c.keysListCmd())
	return cmd
}

// generateKeys is `tokend keys generate`: it writes a new signing key of
// alg into dir and reports what it wrote to w. serve calls it too, for
// JWT_KEYS_GENERATE, so a first start gets exactly what the command makes.
func generateKeys(w io.Writer, dir, alg string) error {
	k, err := keys.Generate(alg)
	if err != nil {
		return fmt.Errorf("--alg: %w", err)
	}
	// Check the refresh keys before writing anything, so a bad file does
	// not leave a half-made directory.
	existing, err := keys.LoadRefreshDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	path, err := keys.WriteFile(dir, k)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generated %s key %s\nwrote %s\n", k.Alg, k.ID, path)
	if len(existing) > 0 {
		return nil // a refresh key only when there is none
	}
	rk := keys.GenerateRefreshKey()
	rpath, err := keys.WriteRefreshFile(dir, rk)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generated refresh key %s\nwrote %s\n", rk.ID, rpath)
	return nil
}

// keyTiming is the rotation schedule every replica derives from the
// configuration (docs/design.md, "Signing keys and rotation"): a new key
// is published JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL before it signs, so
// every replica has read it and every verifier's cached JWKS has it; a
// replaced key stays published for the access-token lifetime plus the
// verification leeway after it stopped signing.
func keyTiming(cfg config.Config) keys.Timing {
	return keys.Timing{
		PrePublish:  cfg.JWKSMaxAge + cfg.KeysReloadInterval,
		RetireAfter: cfg.AccessTTL + token.AccessLeeway,
	}
}

// refreshKeyTiming is the schedule of the refresh keys: a new key is used
// for new sessions JWT_KEYS_RELOAD_INTERVAL after it appears, when every
// replica has read it and can verify the tokens derived from it; a
// replaced key stays usable for JWT_REFRESH_EXPIRES_IN (+ leeway for
// clock skew) after it stopped being used, until every session that
// started with it has expired.
func refreshKeyTiming(cfg config.Config) keys.Timing {
	return keys.Timing{
		PrePublish:  cfg.KeysReloadInterval,
		RetireAfter: cfg.RefreshTTL + token.AccessLeeway,
	}
}

// keysDir is --dir, or JWT_KEYS_DIR when --dir is not given.
func keysDir(flag string, cfg config.Config) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if cfg.KeysDir != "" {
		return cfg.KeysDir, nil
	}
	return "", errors.New("--dir is required (or set JWT_KEYS_DIR)")
}

// signingAlg is --alg in its canonical spelling (es256 is ES256, as in
// JWT_SIGNING_ALG), or JWT_SIGNING_ALG when --alg is not given.
func signingAlg(flag string, cfg config.Config) (string, error) {
	if flag == "" {
		return cfg.SigningAlg, nil
	}
	for _, a := range []string{keys.ES256, keys.EdDSA, keys.RS256} {
		if strings.EqualFold(flag, a) {
			return a, nil
		}
	}
	return "", fmt.Errorf("--alg: %q is not a supported algorithm (use ES256, EdDSA or RS256)", flag)
}

func (c *cli) keysRotateCmd() *cobra.Command {
	var dir, alg, only string
	var prune bool
	cmd := &cobra.Command{
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

Key files whose keys have expired are deleted (--prune=false keeps them).

Run it with the configuration the servers use (e.g. docker compose run
--rm --no-deps tokend keys rotate), since the times follow from it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if only != "" && only != "signing" && only != "refresh" {
				return fmt.Errorf("--only must be signing or refresh, not %q", only)
			}
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if dir, err = keysDir(dir, cfg); err != nil {
				return err
			}
			if alg, err = signingAlg(alg, cfg); err != nil {
				return err
			}
			if only != "refresh" {
				if err := c.rotateSigning(cfg, dir, alg, prune); err != nil {
					return err
				}
			}
			if only != "signing" {
				return c.rotateRefresh(cfg, dir, prune)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory (default JWT_KEYS_DIR)")
	cmd.Flags().StringVar(&alg, "alg", "", "ES256, EdDSA or RS256, in any case (default JWT_SIGNING_ALG)")
	cmd.Flags().StringVar(&only, "only", "", "rotate only the signing keys (signing) or only the refresh keys (refresh)")
	cmd.Flags().BoolVar(&prune, "prune", true, "delete the files of expired keys")
	return cmd
}

func (c *cli) rotateSigning(cfg config.Config, dir, alg string, prune bool) error {
	t := keyTiming(cfg)
	k, path, removed, err := keys.Rotate(dir, alg, t, time.Now, prune)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added %s key %s\nwrote %s\n", k.Alg, k.ID, path)
	now := time.Now()
	sts, _, err := keys.DirStatus(dir, t, now)
	if err != nil {
		return err
	}
	for _, st := range sts { // the new key first
		switch {
		case st.Key.ID == k.ID && st.State == keys.StateActive:
			fmt.Fprintln(c.stdout, "it is the only key: it signs at once")
		case st.Key.ID == k.ID:
			fmt.Fprintf(c.stdout, "published within %s; signs from %s (in %s)\n",
				config.FormatDuration(cfg.KeysReloadInterval), st.SignsFrom.UTC().Format(time.RFC3339),
				config.FormatDuration(st.SignsFrom.Sub(now).Round(time.Second)))
		}
	}
	for _, st := range sts { // then the keys it replaces
		if st.Key.ID != k.ID && (st.State == keys.StateActive || st.State == keys.StatePending) {
			fmt.Fprintf(c.stdout, "%s key %s signs until %s and stays published until %s\n", st.State, st.Key.ID,
				st.SignsUntil.UTC().Format(time.RFC3339), st.DroppedAt.UTC().Format(time.RFC3339))
		}
	}
	for _, p := range removed {
		fmt.Fprintf(c.stdout, "removed expired key file %s\n", p)
	}
	return nil
}

func (c *cli) rotateRefresh(cfg config.Config, dir string, prune bool) error {
	t := refreshKeyTiming(cfg)
	k, path, removed, err := keys.RotateRefresh(dir, t, time.Now, prune)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added refresh key %s\nwrote %s\n", k.ID, path)
	now := time.Now()
	sts, _, err := keys.RefreshDirStatus(dir, t, now)
	if err != nil {
		return err
	}
	for _, st := range sts {
		switch {
		case st.Key.ID == k.ID && st.State == keys.StateActive:
			fmt.Fprintln(c.stdout, "it is the only refresh key: new sessions use it at once")
		case st.Key.ID == k.ID:
			fmt.Fprintf(c.stdout, "new sessions use it from %s (in %s)\n", st.SignsFrom.UTC().Format(time.RFC3339),
				config.FormatDuration(st.SignsFrom.Sub(now).Round(time.Second)))
		case st.State == keys.StateActive || st.State == keys.StatePending:
			fmt.Fprintf(c.stdout, "%s refresh key %s is used for new sessions until %s and verifies its sessions until %s\n",
				st.State, st.Key.ID, st.SignsUntil.UTC().Format(time.RFC3339), st.DroppedAt.UTC().Format(time.RFC3339))
		}
	}
	for _, p := range removed {
		fmt.Fprintf(c.stdout, "removed expired refresh key file %s\n", p)
	}
	return nil
}

func (c *cli) keysListCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "Show each signing and refresh key's state (pending, active, retired, expired) and times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if dir, err = keysDir(dir, cfg); err != nil {
				return err
			}
			t, rt, now := keyTiming(cfg), refreshKeyTiming(cfg), time.Now()
			sts, _, err := keys.DirStatus(dir, t, now)
			if err != nil {
				return err
			}
			rsts, _, err := keys.RefreshDirStatus(dir, rt, now)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "pre-publication %s (JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL); published %s after retiring (JWT_ACCESS_EXPIRES_IN + leeway)\n",
				config.FormatDuration(t.PrePublish), config.FormatDuration(t.RetireAfter))
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
				fmt.Fprintln(c.stdout, "none: `tokend serve` needs one (tokend keys rotate --only refresh)")
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
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory (default JWT_KEYS_DIR)")
	return cmd
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
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
