package main

import (
	"errors"
	"fmt"
	"io"
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
	cmd := &cobra.Command{Use: "keys", Short: "Manage JWT signing keys"}
	var dir, alg string
	gen := &cobra.Command{
		Use: "generate [--dir DIR] [--alg ES256|EdDSA|RS256]", Short: "Generate a signing key into DIR (default JWT_KEYS_DIR)",
		Args: cobra.NoArgs,
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
	path, err := keys.WriteFile(dir, k)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generated %s key %s\nwrote %s\n", k.Alg, k.ID, path)
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
	var dir, alg string
	var prune bool
	cmd := &cobra.Command{
		Use:   "rotate [--dir DIR] [--alg ES256|EdDSA|RS256]",
		Short: "Add a signing key that is published now and signs after the pre-publication delay; prune expired keys",
		Long: `Add a signing key to the key directory shared by every replica.

The new key is published in the JWKS as soon as the replicas re-read the
directory (JWT_KEYS_RELOAD_INTERVAL) and starts signing
JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL after its timestamp; the key it
replaces stops signing then and stays published until every token it signed
has expired (JWT_ACCESS_EXPIRES_IN + 30s leeway). Key files whose keys have
expired are deleted (--prune=false keeps them).

Run it with the configuration the servers use (e.g. docker compose run
--rm --no-deps tokend keys rotate), since the times follow from it.`,
		Args: cobra.NoArgs,
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
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory (default JWT_KEYS_DIR)")
	cmd.Flags().StringVar(&alg, "alg", "", "ES256, EdDSA or RS256, in any case (default JWT_SIGNING_ALG)")
	cmd.Flags().BoolVar(&prune, "prune", true, "delete the files of expired keys")
	return cmd
}

func (c *cli) keysListCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "Show each key's state (pending, active, retired, expired) and times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if dir, err = keysDir(dir, cfg); err != nil {
				return err
			}
			t := keyTiming(cfg)
			sts, _, err := keys.DirStatus(dir, t, time.Now())
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
