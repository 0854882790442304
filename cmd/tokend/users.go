package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

func (c *cli) usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users (create, set-password, roles, unlock, disable, enable, delete, list)"}
	var roles []string
	create := &cobra.Command{
		Use:   "create USERNAME [--role ROLE]...",
		Short: "Create a user; the password is read from standard input, never from the command line",
		Long: `Create a user. The password is read from standard input, never from the
command line (where other users and the shell history would see it): at a
terminal tokend asks for it twice without echoing it; otherwise it reads
the first line, e.g.  echo -n 'a long passphrase' | tokend users create NAME`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("users create takes one USERNAME, got %d arguments; the password is read from standard input, never from the command line (echo -n PASSWORD | tokend users create NAME)", len(args))
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			username, err := credential.Username(strings.TrimSpace(args[0]))
			if err != nil {
				return err
			}
			if err := credential.Roles(roles); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			password, err := c.readPassword(username)
			if err != nil {
				return err
			}
			st, cfg, err := c.adminStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			hash, err := adminHasher(cfg).Hash(ctx, password)
			if err != nil {
				return err
			}
			now := time.Now()
			u := store.User{ID: token.NewID(), Username: username, PasswordHash: hash, Roles: roles, CreatedAt: now, UpdatedAt: now}
			if err := st.CreateUser(ctx, u); err != nil {
				return createUserError(username, err)
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
	cmd.AddCommand(create, c.usersUnlockCmd(),
		setDisabled("disable", "Disable a user and end all their sessions", true),
		setDisabled("enable", "Enable a disabled user", false),
		del, list, c.usersSetPasswordCmd(), c.usersRolesCmd())
	return cmd
}

// createUserError says why CreateUser refused username.
func createUserError(username string, err error) error {
	switch {
	case errors.Is(err, store.ErrLookAlike):
		return fmt.Errorf("user %q looks like an existing user's name (the same Unicode skeleton, UTS #39: e.g. Cyrillic \"а\" for Latin \"a\", \"0\" for \"o\"); choose another name", username)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("user %q already exists", username)
	}
	return err
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

// usersUnlockCmd is `tokend users unlock`: an administrator lets an owner
// the sign-in limits hold back sign in again (ratelimit Clear).
func (c *cli) usersUnlockCmd() *cobra.Command {
	var ips []string
	cmd := &cobra.Command{
		Use:   "unlock USERNAME [--ip ADDRESS]...",
		Short: "Clear a user's sign-in rate limit (the account-wide ceiling; with --ip, the limit at those addresses too)",
		Long: `Clear a user's sign-in rate limit, for an owner who is held back — after
someone guessed at the account from many addresses, the account-wide
ceiling (RATE_LIMIT_LOGIN_PER_ACCOUNT) refuses sign-ins from addresses the
owner has not used before. With --ip, the account's limit at those
addresses (RATE_LIMIT_LOGIN_PER_ACCOUNT_IP) is cleared too. The limit of
an address over all accounts (RATE_LIMIT_LOGIN_PER_IP) is not a user's
and stays. Clearing lets guessing start again: do it for the owner.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, ip := range ips {
				if _, err := netip.ParseAddr(ip); err != nil {
					return fmt.Errorf("--ip %q: not an IP address", ip)
				}
			}
			b, _, err := c.adminBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.close()
			username := args[0]
			if name, err := credential.Username(username); err == nil {
				username = name
			}
			u, err := b.store.UserByName(cmd.Context(), username)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no user %q", username)
			}
			if err != nil {
				return err
			}
			if b.limiter == nil {
				return errors.New("the sign-in rate limits are off (RATE_LIMIT_LOGIN_*=0): there is nothing to clear")
			}
			if err := b.limiter.Clear(cmd.Context(), u.Username, ips...); err != nil {
				return err
			}
			where := ""
			if len(ips) > 0 {
				where = " and at " + strings.Join(ips, ", ")
			}
			fmt.Fprintf(c.stdout, "cleared the sign-in limit of user %s (the account-wide ceiling%s)\n", u.Username, where)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "also clear the user's limit at this address (repeatable)")
	return cmd
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
	if name, err := credential.Username(username); err == nil {
		username = name // the stored, canonical spelling
	}
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

// readPassword reads the new password of user from standard input: at a
// terminal, prompted on standard error without echo and asked twice; else
// the first line, without its line ending (so `echo -n` and `echo` both
// work). It must satisfy the password policy signup applies
// (credential.PasswordProblem).
func (c *cli) readPassword(user string) (string, error) {
	var pw string
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(prompt string) (string, error) {
			fmt.Fprint(c.stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(c.stderr)
			if err != nil {
				return "", fmt.Errorf("read password from the terminal: %w", err)
			}
			return string(b), nil
		}
		first, err := read("Password for " + user + ": ")
		if err != nil {
			return "", err
		}
		if problem := credential.PasswordProblem(user, first); problem != "" {
			return "", errors.New(problem)
		}
		again, err := read("Repeat the password: ")
		if err != nil {
			return "", err
		}
		if again != first {
			return "", errors.New("the passwords do not match")
		}
		pw = first
	} else {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if problem := credential.PasswordProblem(user, pw); problem != "" {
		return "", fmt.Errorf("%s (the password is read from standard input)", problem)
	}
	return pw, nil
}
