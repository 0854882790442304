package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/keys"
)

func (c *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage JWT signing keys"}
	var dir, alg string
	gen := &cobra.Command{
		Use: "generate --dir DIR [--alg ES256|EdDSA|RS256]", Short: "Generate a signing key into DIR",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required")
			}
			k, err := keys.Generate(alg)
			if err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
			path, err := keys.WriteFile(dir, k)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "generated %s key %s\nwrote %s\n", k.Alg, k.ID, path)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for the key files (JWT_KEYS_DIR)")
	gen.Flags().StringVar(&alg, "alg", keys.ES256, "ES256, EdDSA or RS256")
	cmd.AddCommand(gen)
	return cmd
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
			_, port, err := net.SplitHostPort(cfg.HTTPAddr)
			if err != nil {
				return fmt.Errorf("HTTP_ADDR: %w", err)
			}
			hc := &http.Client{Timeout: 3 * time.Second}
			resp, err := hc.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
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
