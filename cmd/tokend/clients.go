package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
)

var knownGrants = []string{"password", "refresh_token", "client_credentials"}

func (c *cli) clientsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Manage OAuth2 clients (create, update, rotate-secret, delete, list)"}
	var (
		public bool
		grants []string
		scopes string
	)
	create := &cobra.Command{
		Use:   "create CLIENT_ID [--public] [--grants password,refresh_token,client_credentials] [--scopes \"read write\"]",
		Short: "Create a client; a confidential client's secret is printed once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if problem := credential.ClientIDProblem(id); problem != "" {
				return fmt.Errorf("client id %q: %s (characters every client library sends unchanged in HTTP Basic)", id, problem)
			}
			if err := checkGrants(grants, public); err != nil {
				return err
			}
			cl := store.Client{ID: id, Public: public, Grants: grants, Scopes: strings.Fields(scopes), CreatedAt: time.Now()}
			var secret string
			if !public {
				secret = credential.NewClientSecret()
				cl.SecretHash = credential.HashClientSecret(secret)
			}
			st, _, err := c.adminStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.CreateClient(cmd.Context(), cl); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("client %q already exists", id)
				}
				return err
			}
			if public {
				fmt.Fprintf(c.stdout, "created public client %s\n", id)
				return nil
			}
			fmt.Fprintf(c.stdout, "created confidential client %s\nclient_secret: %s\n(store it now: it is not shown again)\n", id, secret)
			return nil
		},
	}
	create.Flags().BoolVar(&public, "public", false, "a public client (frontend, mobile app): no secret")
	create.Flags().StringSliceVar(&grants, "grants", []string{"password", "refresh_token"}, "grant types the client may use")
	create.Flags().StringVar(&scopes, "scopes", "", "space-separated scopes the client may request")

	del := &cobra.Command{
		Use: "delete CLIENT_ID", Short: "Delete a client", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withStore(cmd, func(st store.Store) error {
				if err := st.DeleteClient(cmd.Context(), args[0]); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("no client %q", args[0])
					}
					return err
				}
				fmt.Fprintf(c.stdout, "deleted client %s\n", args[0])
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List clients", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cls []store.Client
			err := c.withStore(cmd, func(st store.Store) (err error) {
				cls, err = st.ListClients(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT_ID\tTYPE\tGRANTS\tSCOPES\tCREATED")
			for _, cl := range cls {
				typ := "confidential"
				if cl.Public {
					typ = "public"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cl.ID, typ, strings.Join(cl.Grants, ","), strings.Join(cl.Scopes, " "), cl.CreatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(create, del, list, c.clientsUpdateCmd(), c.clientsRotateSecretCmd())
	return cmd
}
