package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
)

// Account and client administration: set-password, roles,
// rotate-secret, update.

// adminHasher is the argon2id hasher the configuration asks for, one hash
// at a time (the CLI and start-up work).
func adminHasher(cfg config.Config) *credential.Hasher {
	return credential.NewHasher(cfg.Argon2(), 1)
}

func (c *cli) usersSetPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-password USERNAME",
		Short: "Set a user's password (from standard input, or a no-echo prompt on a terminal) and end all their sessions",
		Long: `Set a user's password. The password is read from standard input (its
first line), or, when standard input is a terminal, from a prompt that does
not echo; never from the command line.

Every session of the user ends: whoever knew the old password may hold a
refresh token, and a password change is how an owner gets them out.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, cfg, err := c.adminStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			username := args[0]
			if name, err := credential.Username(username); err == nil {
				username = name // the stored, canonical spelling
			}
			u, err := st.UserByName(ctx, username)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no user %q", args[0])
			}
			if err != nil {
				return err
			}
			password, err := c.readPassword(u.Username)
			if err != nil {
				return err
			}
			hash, err := adminHasher(cfg).Hash(ctx, password)
			if err != nil {
				return err
			}
			now := time.Now()
			u.PasswordHash, u.UpdatedAt = hash, now
			if err := st.UpdateUser(ctx, u); err != nil {
				return err
			}
			active, err := st.ListSessions(ctx, u.ID, now) // the count is for the operator
			if err != nil {
				return err
			}
			n := len(active)
			if err := st.RevokeUserSessions(ctx, u.ID, "", store.ReasonPassword, now); err != nil {
				return fmt.Errorf("the password was changed, but ending the sessions failed (run `tokend sessions revoke %s --all`): %w", u.Username, err)
			}
			fmt.Fprintf(c.stdout, "set the password of user %s; ended %d sessions\n", u.Username, n)
			return nil
		},
	}
}

func (c *cli) usersRolesCmd() *cobra.Command {
	var add, remove []string
	cmd := &cobra.Command{
		Use:   "roles USERNAME [--add ROLE]... [--remove ROLE]...",
		Short: "Show, grant or take away a user's roles (in access tokens from the next refresh on)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, r := range add { // any role may be removed, one kept by an earlier version too
				if err := credential.Role(r); err != nil {
					return err
				}
			}
			return c.withUser(cmd, args[0], func(st store.Store, u store.User) error {
				var roles []string // the user's, then the added ones, each once
				for _, r := range append(slices.Clone(u.Roles), add...) {
					if !slices.Contains(roles, r) && !slices.Contains(remove, r) {
						roles = append(roles, r)
					}
				}
				if len(add)+len(remove) > 0 {
					u.Roles, u.UpdatedAt = roles, time.Now()
					if err := st.UpdateUser(cmd.Context(), u); err != nil {
						return err
					}
				}
				fmt.Fprintf(c.stdout, "user %s roles: %s\n", u.Username, strings.Join(roles, ","))
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&add, "add", nil, "role to grant (repeatable)")
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "role to take away (repeatable)")
	return cmd
}

// withClient runs f with the admin store open and the client found.
func (c *cli) withClient(cmd *cobra.Command, id string, f func(st store.Store, cl store.Client) error) error {
	return c.withStore(cmd, func(st store.Store) error {
		cl, err := st.Client(cmd.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no client %q", id)
		}
		if err != nil {
			return err
		}
		return f(st, cl)
	})
}

func (c *cli) clientsRotateSecretCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-secret CLIENT_ID",
		Short: "Replace a confidential client's secret; the new one is printed once",
		Long: `Replace a confidential client's secret with a new generated one, printed
once. The old secret stops working at once: every replica drops the client
from its cache when it reads the client-updated event (or after
CLIENT_CACHE_TTL, should the event log be unreachable). So do the access
tokens the client got with client_credentials until now — at tokend
(introspection, GET /events, whose streams opened with the old secret or
such a token end) and at resource servers that follow the revocation
feed — and the client gets new ones with the new secret.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, args[0], func(st store.Store, cl store.Client) error {
				if cl.Public {
					return fmt.Errorf("client %q is public: it has no secret", cl.ID)
				}
				secret := credential.NewClientSecret()
				old := cl
				cl.SecretHash = credential.HashClientSecret(secret)
				if err := store.ReplaceClient(cmd.Context(), st, old, cl, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "rotated the secret of client %s\nclient_secret: %s\n(store it now: it is not shown again)\n", cl.ID, secret)
				return nil
			})
		},
	}
}

// checkGrants validates a client's grant list.
func checkGrants(grants []string, public bool) error {
	for _, g := range grants {
		if !slices.Contains(knownGrants, g) {
			return fmt.Errorf("--grants: unknown grant %q (use %s)", g, strings.Join(knownGrants, ","))
		}
	}
	if public && slices.Contains(grants, "client_credentials") {
		return errors.New("--grants: a public client cannot use client_credentials")
	}
	return nil
}

func (c *cli) clientsUpdateCmd() *cobra.Command {
	var (
		grants []string
		scopes string
	)
	cmd := &cobra.Command{
		Use:   "update CLIENT_ID [--grants password,refresh_token,client_credentials] [--scopes \"read write\"]",
		Short: "Change the grant types and scopes a client may use",
		Long: `Change the grant types (--grants) and the scopes (--scopes, space-separated;
"" for none) a client may use; a flag not given keeps its value. Existing
sessions keep the scope they were granted; new sign-ins and client tokens
follow the new lists (on every replica as soon as it reads the
client-updated event; CLIENT_CACHE_TTL at worst). Taking a grant or a scope
away also ends the access tokens the client got with client_credentials
until now, as rotate-secret does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if !fl.Changed("grants") && !fl.Changed("scopes") {
				return errors.New("nothing to change: give --grants and/or --scopes")
			}
			return c.withClient(cmd, args[0], func(st store.Store, cl store.Client) error {
				old := cl
				if fl.Changed("grants") {
					if err := checkGrants(grants, cl.Public); err != nil {
						return err
					}
					cl.Grants = grants
				}
				if fl.Changed("scopes") {
					cl.Scopes = strings.Fields(scopes)
				}
				if err := store.ReplaceClient(cmd.Context(), st, old, cl, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "updated client %s: grants %s; scopes %q\n", cl.ID, strings.Join(cl.Grants, ","), strings.Join(cl.Scopes, " "))
				return nil
			})
		},
	}
	cmd.Flags().StringSliceVar(&grants, "grants", nil, "grant types the client may use")
	cmd.Flags().StringVar(&scopes, "scopes", "", "space-separated scopes the client may request")
	return cmd
}
