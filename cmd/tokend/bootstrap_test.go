package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const bootstrapYAML = `
users:
  - username: alice
    roles: [admin]
    password_file: %DIR%/alice-password
  - username: bob
    password_env: BOB_PASSWORD
clients:
  - id: web
    public: true
    grants: [password, refresh_token]
    scopes: [read, write]
  - id: reports
    grants: [client_credentials]
    scopes: [read]
    secret_file: %DIR%/reports-secret
`

const (
	alicePassword = "alice-long-password\n" // a trailing newline, as editors leave it
	bobPassword   = "bob-long-password"
	reportsSecret = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5MTIzNA"
)

func writeBootstrap(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "alice-password"), []byte(alicePassword), 0o600))
	must(os.WriteFile(filepath.Join(dir, "reports-secret"), []byte(reportsSecret+"\n"), 0o600))
	path = filepath.Join(dir, "bootstrap.yaml")
	must(os.WriteFile(path, []byte(strings.ReplaceAll(bootstrapYAML, "%DIR%", dir)), 0o600))
	return dir, path
}

func jwksKids(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids
}

// TOKEND_BOOTSTRAP and JWT_KEYS_GENERATE: a first start creates the users,
// the clients and persistent keys; a second start changes nothing — not
// the keys, not a password changed meanwhile with the CLI — and no secret
// reaches the log.
func TestServeBootstrap(t *testing.T) {
	dir, path := writeBootstrap(t)
	keysDir := filepath.Join(dir, "keys") // does not exist yet
	env := redisEnv(t, "TOKEND_BOOTSTRAP="+path, "JWT_KEYS_DIR="+keysDir, "JWT_KEYS_GENERATE=true", "BOB_PASSWORD="+bobPassword)

	base, logs := serveFor(t, env)
	signIn := func(base, user, pw string) int {
		status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {user}, "password": {pw}})
		if status == 200 && m["scope"] != "read write" {
			t.Fatalf("sign in: %v", m)
		}
		return status
	}
	if signIn(base, "alice", strings.TrimSpace(alicePassword)) != 200 || signIn(base, "bob", bobPassword) != 200 {
		t.Fatalf("bootstrapped users cannot sign in:\n%s", logs.String())
	}
	status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"reports"}, "client_secret": {reportsSecret}})
	if status != 200 || m["scope"] != "read" {
		t.Fatalf("bootstrapped client: %d %v", status, m)
	}
	files, _ := filepath.Glob(filepath.Join(keysDir, "*.pem"))
	if len(files) != 1 {
		t.Fatalf("JWT_KEYS_GENERATE made %d key files: %v", len(files), files)
	}
	kids := jwksKids(t, base)
	if out, err := run(t, env, "", "users", "list"); err != nil || !strings.Contains(out, "admin") {
		t.Fatalf("users list: %v %s", err, out)
	}

	// The operator changes alice's password; a restart must not undo it.
	if out, err := run(t, env, "a-brand-new-password\n", "users", "set-password", "alice"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// The secret files of what exists are not read again: they may go.
	if err := os.Remove(filepath.Join(dir, "reports-secret")); err != nil {
		t.Fatal(err)
	}
	base2, logs2 := serveFor(t, env)
	if signIn(base2, "alice", "a-brand-new-password") != 200 || signIn(base2, "alice", strings.TrimSpace(alicePassword)) != 400 {
		t.Fatal("the second start reset alice's password")
	}
	if files2, _ := filepath.Glob(filepath.Join(keysDir, "*.pem")); len(files2) != 1 || !slices.Equal(jwksKids(t, base2), kids) {
		t.Fatalf("the second start changed the keys: %v", files2)
	}
	if !strings.Contains(logs2.String(), "bootstrap: user exists, left unchanged") || !strings.Contains(logs2.String(), "bootstrap: client exists, left unchanged") {
		t.Fatalf("second start:\n%s", logs2.String())
	}
	for _, l := range []string{logs.String(), logs2.String()} {
		if !strings.Contains(logs.String(), "bootstrap: created user") {
			t.Fatalf("first start:\n%s", logs.String())
		}
		for _, secret := range []string{strings.TrimSpace(alicePassword), bobPassword, reportsSecret} {
			if strings.Contains(l, secret) {
				t.Fatalf("a secret reached the log:\n%s", l)
			}
		}
	}
}

// A bad bootstrap file stops start-up with every problem named, and never
// a secret.
func TestBootstrapErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tiny-secret-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What `openssl rand -base64 32` makes: its "+" would reach tokend as a
	// space from `curl -u` (HTTP Basic is form-decoded).
	base64Secret := filepath.Join(dir, "base64")
	if err := os.WriteFile(base64Secret, []byte("Xz3+9QkT2bHc/1LwVn8eR5yU0aDfGjKlMpNqOsTuVwY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"users:\n  - username: a\n    pasword_file: x\n", "field pasword_file not found"},
		{"users:\n  - username: a\n", "exactly one of password_file and password_env"},
		{"users:\n  - username: a b\n    password_env: X\n", "spaces"},
		{"clients:\n  - id: web\n    public: true\n    grants: [password]\n    secret_env: X\n", "a public client has no secret"},
		{"clients:\n  - id: svc\n    grants: [client_credentials]\n", "exactly one of secret_file and secret_env"},
		{"clients:\n  - id: svc\n    grants: [implicit]\n    secret_env: X\n", `unknown grant "implicit"`},
		{"clients:\n  - id: web\n    public: true\n    grants: [client_credentials]\n", "a public client cannot use client_credentials"},
		{"clients:\n  - id: svc\n    grants: [client_credentials]\n    secret_file: " + short + "\n", "at least 43 characters"},
		{"clients:\n  - id: svc\n    grants: [client_credentials]\n    secret_file: " + base64Secret + "\n", "openssl rand -hex 32"},
		{"users:\n  - username: a\n    password_env: NOT_SET_ANYWHERE\n", "environment variable NOT_SET_ANYWHERE is not set"},
		{"users:\n  - username: a\n    password_file: /nonexistent/pw\n", "/nonexistent/pw"},
	} {
		path := filepath.Join(dir, "bootstrap.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, []string{"TOKEND_BOOTSTRAP=" + path, "HTTP_ADDR=127.0.0.1:0", "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "", "serve")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: serve: %v, want an error with %q\n%s", tc.yaml, err, tc.want, out)
		}
		if err != nil && (strings.Contains(err.Error()+out, "tiny-secret-value") || strings.Contains(err.Error()+out, "Xz3+9QkT")) {
			t.Errorf("the secret is in the error: %v", err)
		}
	}
}

// deploy/dev-admin-password is the password devAdminPassword names.
func TestDevAdminPasswordFile(t *testing.T) {
	b, err := os.ReadFile("../../deploy/dev-admin-password")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(string(b), "\r\n"); got != devAdminPassword {
		t.Fatalf("deploy/dev-admin-password holds %q, devAdminPassword is %q", got, devAdminPassword)
	}
}

// The committed development password does not sign anyone in outside a
// trial: serve refuses it for a bootstrap user to create, and for one
// that already has it, naming the ways out; TOKEND_ALLOW_DEV_SECRETS=true
// starts with a warning; a new password ends it.
func TestBootstrapRefusesTheDevPassword(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pwFile, []byte(devAdminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(path, []byte("users:\n  - username: admin\n    roles: [admin]\n    password_file: "+pwFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := redisEnv(t, "TOKEND_BOOTSTRAP="+path)
	refused := func(want string) {
		t.Helper()
		out, err := run(t, append(env, "HTTP_ADDR=127.0.0.1:0"), "", "serve")
		if err == nil || !strings.Contains(err.Error(), "development password") || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "TOKEND_ALLOW_DEV_SECRETS=true") || strings.Contains(err.Error()+out, devAdminPassword) {
			t.Fatalf("serve with the development password: %v\n%s", err, out)
		}
	}
	refused("TOKEND_ADMIN_PASSWORD_FILE")
	if out, _ := run(t, env, "", "users", "list"); strings.Contains(out, "admin") {
		t.Fatal("the refused start created the user")
	}

	// A trial, said explicitly: it starts, and says what it allowed.
	base, logs := serveFor(t, append(env, "TOKEND_ALLOW_DEV_SECRETS=true"))
	if status, _ := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"none"}}); status == 0 {
		t.Fatal("no answer")
	}
	if !strings.Contains(logs.String(), "starts anyway because of TOKEND_ALLOW_DEV_SECRETS=true") {
		t.Fatalf("no warning:\n%s", logs.String())
	}

	// The user now exists with that password: still refused without the
	// setting, until it has another one.
	refused("tokend users set-password admin")
	if out, err := run(t, env, "a-password-of-my-own\n", "users", "set-password", "admin"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	serveFor(t, env)
}
