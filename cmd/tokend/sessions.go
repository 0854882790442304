package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/store"
)

func (c *cli) sessionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "List and revoke a user's sessions"}
	list := &cobra.Command{
		Use: "list USERNAME", Short: "List a user's active sessions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withUser(cmd, args[0], func(st store.Store, u store.User) error {
				ss, err := st.ListSessions(cmd.Context(), u.ID, time.Now())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SESSION_ID\tCLIENT\tIP\tCREATED\tLAST_USED\tEXPIRES\tDEVICE")
				for _, s := range ss {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.ClientID, s.IP,
						s.CreatedAt.UTC().Format(time.RFC3339), s.UpdatedAt.UTC().Format(time.RFC3339),
						s.ExpiresAt.UTC().Format(time.RFC3339), s.UserAgent)
				}
				return tw.Flush()
			})
		},
	}
	var all bool
	revoke := &cobra.Command{
		Use: "revoke USERNAME (SESSION_ID | --all)", Short: "Revoke one session, or all of a user's sessions",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 2) {
				return errors.New("name one SESSION_ID or pass --all")
			}
			return c.withUser(cmd, args[0], func(st store.Store, u store.User) error {
				if all {
					// One O(1) store call ends them all; the count is read
					// just before, for the operator.
					now := time.Now()
					active, err := st.ListSessions(cmd.Context(), u.ID, now)
					if err != nil {
						return err
					}
					if err := st.RevokeUserSessions(cmd.Context(), u.ID, "", store.ReasonRevoked, now); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "revoked %d session(s) of %s\n", len(active), u.Username)
					return nil
				}
				if err := st.RevokeSession(cmd.Context(), u.ID, args[1], store.ReasonRevoked, time.Now()); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("user %s has no session %q", u.Username, args[1])
					}
					return err
				}
				fmt.Fprintf(c.stdout, "revoked session %s of %s\n", args[1], u.Username)
				return nil
			})
		},
	}
	revoke.Flags().BoolVar(&all, "all", false, "revoke every session of the user")
	cmd.AddCommand(list, revoke)
	return cmd
}
