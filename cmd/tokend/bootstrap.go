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

// devPasswordVerdict is the verdict on a bootstrap user's password being
// devAdminPassword (dev): none (a zero finding) if it is not; else a FAIL
// that refuses, naming the way out (fix, for a user who has it already;
// "" for one to create, whose password file is to be replaced), or, with
// allowDev, a WARN.
func devPasswordVerdict(dev bool, user, fix string, allowDev bool) finding {
	const check = "bootstrap.dev-password"
	if !dev {
		return finding{}
	}
	what := "its password is"
	if fix == "" {
		what, fix = "the password given for it is", "put a password of your own in the file or variable it comes from (with docker compose: a file named by TOKEND_ADMIN_PASSWORD_FILE)"
	}
	msg := fmt.Sprintf("user %s: %s the development password committed to the tokend repository (deploy/dev-admin-password), which anyone can read", user, what)
	if allowDev {
		return newWarn(check, msg+"; serve starts anyway because of TOKEND_ALLOW_DEV_SECRETS=true or --dev (a local trial only)", fix, slog.String("username", user))
	}
	return newFail(check, msg, fix+", or set TOKEND_ALLOW_DEV_SECRETS=true for a local trial").refusing()
}

// bootstrapPlan is what applyBootstrap is to do with a bootstrap file:
// which of its users and clients exist already (left as they are), the
// password or secret of each one to create, and the verdicts on them
// (findings): a password or secret that cannot be read or is unusable,
// and the development password, refuse; the development password,
// allowed, is a warning.
type bootstrapPlan struct {
	f                        bootstrapFile
	userExists, clientExists []bool
	passwords, secrets       []string
	findings                 []finding
}

// planBootstrap finds which of f's users and clients exist in st, then
// reads and checks the secret of every one to create, writing nothing:
// applyBootstrap's first half, and what `tokend doctor` checks. Its error
// is only the store's; no finding holds a secret.
//
// A user's password may not be devAdminPassword — neither the one read
// for a user to create, nor the one an existing bootstrap user still has
// (one argon2id check per existing bootstrap user) — unless allowDev
// (TOKEND_ALLOW_DEV_SECRETS, or serve --dev), which makes it a warning.
func planBootstrap(ctx context.Context, f bootstrapFile, st store.Store, h *credential.Hasher, environ []string, allowDev bool) (*bootstrapPlan, error) {
	p := &bootstrapPlan{f: f, userExists: make([]bool, len(f.Users)), clientExists: make([]bool, len(f.Clients)),
		passwords: make([]string, len(f.Users)), secrets: make([]string, len(f.Clients))}
	verdict := func(v finding) {
		if v.check != "" {
			p.findings = append(p.findings, v)
		}
	}
	unusable := func(err error) {
		if err != nil {
			verdict(newFail("bootstrap", err.Error(), "correct the file or environment variable it names (docs/operations.md, \"Bootstrap users and clients at start-up\")").refusing())
		}
	}
	for i, u := range f.Users {
		old, err := st.UserByName(ctx, u.Username)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		}
		p.userExists[i] = err == nil
		if !p.userExists[i] {
			continue
		}
		dev, err := h.Verify(ctx, devAdminPassword, old.PasswordHash)
		if err != nil && !errors.Is(err, credential.ErrMalformedHash) {
			return nil, fmt.Errorf("bootstrap: user %s: %w", u.Username, err)
		}
		verdict(devPasswordVerdict(dev, u.Username, "set another with `tokend users set-password "+u.Username+"`", allowDev))
	}
	for i, c := range f.Clients {
		_, err := st.Client(ctx, c.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("bootstrap: client %s: %w", c.ID, err)
		}
		p.clientExists[i] = err == nil
	}

	for i, u := range f.Users {
		if p.userExists[i] {
			continue
		}
		pw, err := secretSource("password of user "+u.Username, u.PasswordFile, u.PasswordEnv, environ)
		if err == nil {
			if problem := credential.PasswordProblem(u.Username, pw); problem != "" {
				err = fmt.Errorf("password of user %s: %s", u.Username, problem)
			}
		}
		if err == nil {
			verdict(devPasswordVerdict(pw == devAdminPassword, u.Username, "", allowDev))
		}
		p.passwords[i] = pw
		unusable(err)
	}
	for i, c := range f.Clients {
		if c.Public || p.clientExists[i] {
			continue
		}
		sec, err := secretSource("secret of client "+c.ID, c.SecretFile, c.SecretEnv, environ)
		if err == nil {
			if problem := credential.ClientSecretProblem(sec); problem != "" {
				err = fmt.Errorf("secret of client %s: %s", c.ID, problem)
			}
		}
		p.secrets[i] = sec
		unusable(err)
	}
	return p, nil
}

// applyBootstrap creates the users and clients of f that do not exist
// (planBootstrap says which, having checked the secret of each, so a
// missing or unusable secret stops start-up with nothing half-done). An
// existing user or client is left as it is, and its secret source is not
// read: the file seeds a deployment, the CLI manages it afterwards (and
// another replica starting at the same moment may have just created it).
func applyBootstrap(ctx context.Context, f bootstrapFile, st store.Store, h *credential.Hasher, environ []string, allowDev bool, log *slog.Logger) error {
	p, err := planBootstrap(ctx, f, st, h, environ, allowDev)
	if err != nil {
		return err
	}
	if err := logFindings(ctx, log, p.findings); err != nil {
		return fmt.Errorf("TOKEND_BOOTSTRAP: %w", err)
	}

	now := time.Now()
	for i, u := range f.Users {
		if p.userExists[i] {
			log.Info("bootstrap: user exists, left unchanged", slog.String("username", u.Username))
			continue
		}
		hash, err := h.Hash(ctx, p.passwords[i])
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
		if p.clientExists[i] {
			log.Info("bootstrap: client exists, left unchanged", slog.String("client_id", c.ID))
			continue
		}
		nc := store.Client{ID: c.ID, Public: c.Public, Grants: c.Grants, Scopes: c.Scopes, CreatedAt: now}
		if !c.Public {
			nc.SecretHash = credential.HashClientSecret(p.secrets[i])
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
