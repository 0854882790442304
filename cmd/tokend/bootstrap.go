package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// bootstrapFile is TOKEND_BOOTSTRAP: users and clients that serve creates
// at start-up when they do not exist (docs/design.md, "Bootstrap"). Secrets are never in
// the file itself: each comes from a file (docker/compose secrets) or an
// environment variable.
type bootstrapFile struct {
	Users   []bootstrapUser   `yaml:"users"`
	Clients []bootstrapClient `yaml:"clients"`
}

type bootstrapUser struct {
	Username     string   `yaml:"username"`
	Roles        []string `yaml:"roles"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
}

type bootstrapClient struct {
	ID         string   `yaml:"id"`
	Public     bool     `yaml:"public"`
	Grants     []string `yaml:"grants"`
	Scopes     []string `yaml:"scopes"`
	SecretFile string   `yaml:"secret_file"`
	SecretEnv  string   `yaml:"secret_env"`
}

// secretSource reads one secret from file or the environment variable env
// (exactly one of them), without its trailing line ending. Errors name the
// source, never the value.
func secretSource(what, file, env string, environ []string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("%s: give a file or an environment variable, not both", what)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case env != "":
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == env {
				return strings.TrimRight(v, "\r\n"), nil
			}
		}
		return "", fmt.Errorf("%s: environment variable %s is not set", what, env)
	}
	return "", fmt.Errorf("%s: no source (give a file or an environment variable)", what)
}

// loadBootstrap reads and checks the file; every problem is reported,
// none with a secret in it.
func loadBootstrap(path string) (bootstrapFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return bootstrapFile{}, fmt.Errorf("TOKEND_BOOTSTRAP: %w", err)
	}
	var f bootstrapFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// A typo is an error, not a silently ignored key; an empty file
	// creates nothing.
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return bootstrapFile{}, fmt.Errorf("TOKEND_BOOTSTRAP %s: %w", path, err)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("TOKEND_BOOTSTRAP %s: "+format, append([]any{path}, args...)...))
	}
	seen := map[string]bool{}
	for i, u := range f.Users {
		name, err := credential.Username(u.Username)
		if err != nil {
			bad("users[%d]: %v", i, err)
		} else {
			f.Users[i].Username = name // the canonical spelling the store keeps
			u.Username = name
		}
		if seen["u:"+strings.ToLower(u.Username)] {
			bad("users[%d]: %q is listed twice", i, u.Username)
		}
		seen["u:"+strings.ToLower(u.Username)] = true
		if err := credential.Roles(u.Roles); err != nil {
			bad("users[%d] (%s): %v", i, u.Username, err)
		}
		if (u.PasswordFile == "") == (u.PasswordEnv == "") {
			bad("users[%d] (%s): give exactly one of password_file and password_env", i, u.Username)
		}
	}
	for i, c := range f.Clients {
		if problem := credential.ClientIDProblem(c.ID); problem != "" {
			bad("clients[%d]: id %q: %s", i, c.ID, problem)
		}
		if seen["c:"+c.ID] {
			bad("clients[%d]: %q is listed twice", i, c.ID)
		}
		seen["c:"+c.ID] = true
		if len(c.Grants) == 0 {
			bad("clients[%d] (%s): grants is required (password, refresh_token, client_credentials)", i, c.ID)
		}
		if err := checkGrants(c.Grants, c.Public); err != nil {
			bad("clients[%d] (%s): %v", i, c.ID, strings.TrimPrefix(err.Error(), "--"))
		}
		hasSecret := c.SecretFile != "" || c.SecretEnv != ""
		switch {
		case c.Public && hasSecret:
			bad("clients[%d] (%s): a public client has no secret", i, c.ID)
		case !c.Public && (c.SecretFile == "") == (c.SecretEnv == ""):
			bad("clients[%d] (%s): a confidential client needs exactly one of secret_file and secret_env", i, c.ID)
		}
	}
	if len(errs) > 0 {
		return bootstrapFile{}, errors.Join(errs...)
	}
	return f, nil
}

// devAdminPassword is the password committed to the tokend repository as
// deploy/dev-admin-password, the default admin password of
// docker-compose.yml: anyone who has read the repository knows it.
const devAdminPassword = "dev-admin-password-change-me"

// refuseDevPassword is the verdict on a bootstrap user's password being
// devAdminPassword (dev): nil if it is not; else an error naming the
// way out (fix, for a user who has it already; "" for one to create,
// whose password file is to be replaced), or, with allowDev, nil after a
// warning.
func refuseDevPassword(dev bool, user, fix string, allowDev bool, log *slog.Logger) error {
	if !dev {
		return nil
	}
	what := "its password is"
	if fix == "" {
		what, fix = "the password given for it is", "put a password of your own in the file or variable it comes from (with docker compose: a file named by TOKEND_ADMIN_PASSWORD_FILE)"
	}
	msg := fmt.Sprintf("user %s: %s the development password committed to the tokend repository (deploy/dev-admin-password), which anyone can read", user, what)
	if allowDev {
		log.Warn(msg+"; starting anyway because of TOKEND_ALLOW_DEV_SECRETS=true or --dev (a local trial only)", slog.String("username", user))
		return nil
	}
	return fmt.Errorf("%s: %s, or set TOKEND_ALLOW_DEV_SECRETS=true for a local trial", msg, fix)
}

// applyBootstrap creates the users and clients of f that do not exist.
// It first finds which exist, then reads and checks the secret of every
// one to create, before writing anything, so a missing or unusable secret
// stops start-up with nothing half-done. An existing user or client is
// left as it is, and its secret source is not read: the file seeds a
// deployment, the CLI manages it afterwards (and another replica starting
// at the same moment may have just created it).
//
// A user's password may not be devAdminPassword — neither the one read
// for a user to create, nor the one an existing bootstrap user still has
// (one argon2id check per existing bootstrap user at each start) — unless
// allowDev (TOKEND_ALLOW_DEV_SECRETS, or serve --dev), which logs a
// warning instead.
func applyBootstrap(ctx context.Context, f bootstrapFile, st store.Store, h *credential.Hasher, environ []string, allowDev bool, log *slog.Logger) error {
	userExists := make([]bool, len(f.Users))
	var errs []error
	for i, u := range f.Users {
		old, err := st.UserByName(ctx, u.Username)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		}
		userExists[i] = err == nil
		if !userExists[i] {
			continue
		}
		dev, err := h.Verify(ctx, devAdminPassword, old.PasswordHash)
		if err != nil && !errors.Is(err, credential.ErrMalformedHash) {
			return fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		}
		errs = append(errs, refuseDevPassword(dev, u.Username, "set another with `tokend users set-password "+u.Username+"`", allowDev, log))
	}
	clientExists := make([]bool, len(f.Clients))
	for i, c := range f.Clients {
		_, err := st.Client(ctx, c.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bootstrap: client %s: %w", c.ID, err)
		}
		clientExists[i] = err == nil
	}

	passwords := make([]string, len(f.Users))
	secrets := make([]string, len(f.Clients))
	for i, u := range f.Users {
		if userExists[i] {
			continue
		}
		pw, err := secretSource("password of user "+u.Username, u.PasswordFile, u.PasswordEnv, environ)
		if err == nil {
			if problem := credential.PasswordProblem(u.Username, pw); problem != "" {
				err = fmt.Errorf("password of user %s: %s", u.Username, problem)
			}
		}
		if err == nil {
			err = refuseDevPassword(pw == devAdminPassword, u.Username, "", allowDev, log)
		}
		passwords[i] = pw
		errs = append(errs, err)
	}
	for i, c := range f.Clients {
		if c.Public || clientExists[i] {
			continue
		}
		sec, err := secretSource("secret of client "+c.ID, c.SecretFile, c.SecretEnv, environ)
		if err == nil {
			if problem := credential.ClientSecretProblem(sec); problem != "" {
				err = fmt.Errorf("secret of client %s: %s", c.ID, problem)
			}
		}
		secrets[i] = sec
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("TOKEND_BOOTSTRAP: %w", err)
	}

	now := time.Now()
	for i, u := range f.Users {
		if userExists[i] {
			log.Info("bootstrap: user exists, left unchanged", slog.String("username", u.Username))
			continue
		}
		hash, err := h.Hash(ctx, passwords[i])
		if err != nil {
			return fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		}
		nu := store.User{ID: token.NewID(), Username: u.Username, PasswordHash: hash, Roles: u.Roles, CreatedAt: now, UpdatedAt: now}
		switch err := st.CreateUser(ctx, nu); {
		case errors.Is(err, store.ErrLookAlike):
			return fmt.Errorf("bootstrap: %w", createUserError(u.Username, err))
		case errors.Is(err, store.ErrConflict):
			log.Info("bootstrap: user exists, left unchanged", slog.String("username", u.Username))
		case err != nil:
			return fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		default:
			log.Info("bootstrap: created user", slog.String("username", u.Username), slog.String("user_id", nu.ID),
				slog.String("roles", strings.Join(u.Roles, ",")))
		}
	}
	for i, c := range f.Clients {
		if clientExists[i] {
			log.Info("bootstrap: client exists, left unchanged", slog.String("client_id", c.ID))
			continue
		}
		nc := store.Client{ID: c.ID, Public: c.Public, Grants: c.Grants, Scopes: c.Scopes, CreatedAt: now}
		if !c.Public {
			nc.SecretHash = credential.HashClientSecret(secrets[i])
		}
		switch err := st.CreateClient(ctx, nc); {
		case errors.Is(err, store.ErrConflict):
			log.Info("bootstrap: client exists, left unchanged", slog.String("client_id", c.ID))
		case err != nil:
			return fmt.Errorf("bootstrap: client %s: %w", c.ID, err)
		default:
			log.Info("bootstrap: created client", slog.String("client_id", c.ID), slog.Bool("public", c.Public),
				slog.String("grants", strings.Join(c.Grants, ",")), slog.String("scopes", strings.Join(c.Scopes, " ")))
		}
	}
	return nil
}
