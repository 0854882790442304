package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// minPasswordLen is the shortest password the CLI accepts.
const minPasswordLen = 8

func (c *cli) usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users (create, disable, enable, delete, list)"}
	var roles []string
	create := &cobra.Command{
		Use:   "create USERNAME [--role ROLE]...",
		Short: "Create a user; the password is read from standard input, never from the command line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			username := strings.TrimSpace(args[0])
			if err := validUsername(username); err != nil {
				return err
			}
			for _, r := range roles {
				if r == "" || strings.ContainsAny(r, " \t\n") {
					return fmt.Errorf("--role %q: a role is one word without spaces", r)
				}
			}
			password, err := readPassword(c.stdin)
			if err != nil {
				return err
			}
			st, cfg, err := c.adminStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			h := credential.NewHasher(credential.Argon2Params{
				Memory: cfg.PasswordHashMemory, Iterations: cfg.PasswordHashIterations,
				Parallelism: cfg.PasswordHashParallelism, SaltLen: 16, KeyLen: 32,
			}, 1)
			hash, err := h.Hash(ctx, password)
			if err != nil {
				return err
			}
			now := time.Now()
			u := store.User{ID: token.NewID(), Username: username, PasswordHash: hash, Roles: roles, CreatedAt: now, UpdatedAt: now}
			if err := st.CreateUser(ctx, u); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("user %q already exists", username)
				}
				return err
			}
			fmt.Fprintf(c.stdout, "created user %s (id %s)\n", username, u.ID)
			return nil
		},
	}
	create.Flags().StringArrayVar(&roles, "role", nil, "role to grant (repeatable)")

	setDisabled := func(use, short string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " USERNAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.withUser(cmd, args[0], func(st store.Store, u store.User) error {
					if err := st.SetUserDisabled(cmd.Context(), u.ID, disabled, time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "%sd user %s\n", use, u.Username)
					return nil
				})
			},
		}
	}
	del := &cobra.Command{
		Use: "delete USERNAME", Short: "Delete a user and all their sessions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withUser(cmd, args[0], func(st store.Store, u store.User) error {
				if err := st.DeleteUser(cmd.Context(), u.ID); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "deleted user %s\n", u.Username)
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withStore(cmd, func(st store.Store) error { return c.listUsers(cmd, st) })
		},
	}
	cmd.AddCommand(create,
		setDisabled("disable", "Disable a user and end all their sessions", true),
		setDisabled("enable", "Enable a disabled user", false),
		del, list)
	return cmd
}

func (c *cli) listUsers(cmd *cobra.Command, st store.Store) error {
	users, err := st.ListUsers(cmd.Context())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tROLES\tSTATUS\tCREATED")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.ID, strings.Join(u.Roles, ","), status, u.CreatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// withStore runs f with the admin store open.
func (c *cli) withStore(cmd *cobra.Command, f func(st store.Store) error) error {
	st, _, err := c.adminStore(cmd.Context())
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

// withUser runs f with the admin store open and the named user found.
func (c *cli) withUser(cmd *cobra.Command, username string, f func(st store.Store, u store.User) error) error {
	return c.withStore(cmd, func(st store.Store) error {
		u, err := st.UserByName(cmd.Context(), username)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no user %q", username)
		}
		if err != nil {
			return err
		}
		return f(st, u)
	})
}

// validUsername accepts a name or an email address: printable, no spaces,
// at most 254 bytes.
func validUsername(s string) error {
	if s == "" || len(s) > 254 {
		return errors.New("a username is 1 to 254 characters")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return errors.New("a username must not contain spaces or control characters")
		}
	}
	return nil
}

// readPassword reads the password from stdin: the first line, without its
// line ending (so `echo -n` and `echo` both work).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < minPasswordLen {
		return "", fmt.Errorf("the password (read from standard input) must be at least %d characters", minPasswordLen)
	}
	return pw, nil
}
