package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/verify"
)

func TestKeysRotateAndList(t *testing.T) {
	dir := t.TempDir()
	env := []string{"JWT_KEYS_DIR=" + dir, "JWT_SIGNING_ALG=EdDSA"}

	if _, err := run(t, nil, "", "keys", "rotate"); err == nil || !strings.Contains(err.Error(), "--dir is required") {
		t.Fatalf("rotate without a dir: %v", err)
	}
	if _, err := run(t, nil, "", "keys", "rotate", "--dir", dir, "--alg", "HS256"); err == nil {
		t.Fatal("HS256 accepted")
	}
	if _, err := run(t, env, "", "keys", "rotate", "--only", "both"); err == nil || !strings.Contains(err.Error(), "--only") {
		t.Fatalf("--only both: %v", err)
	}
	out, err := run(t, env, "", "keys", "rotate")
	if err != nil || !strings.Contains(out, "added EdDSA key") || !strings.Contains(out, "signs at once") ||
		!strings.Contains(out, "added refresh key") || !strings.Contains(out, "new sessions use it at once") {
		t.Fatalf("first rotate (JWT_KEYS_DIR, JWT_SIGNING_ALG): %v\n%s", err, out)
	}
	out, err = run(t, nil, "", "keys", "rotate", "--dir", dir, "--alg", "ES256")
	if err != nil || !strings.Contains(out, "added ES256 key") || !regexp.MustCompile(`published within 15s; signs from \S+ \(in 5m1[5-7]s\)`).MatchString(out) ||
		!strings.Contains(out, "active key") {
		t.Fatalf("second rotate: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`new sessions use it from \S+ \(in 1[5-7]s\)`).MatchString(out) || !strings.Contains(out, "active refresh key") {
		t.Fatalf("second rotate, refresh key: %s", out)
	}
	// --only rotates one kind.
	out, err = run(t, nil, "", "keys", "rotate", "--dir", dir, "--only", "refresh")
	if err != nil || strings.Contains(out, "added ES256") || strings.Contains(out, "added EdDSA") || !strings.Contains(out, "added refresh key") {
		t.Fatalf("rotate --only refresh: %v\n%s", err, out)
	}
	out, err = run(t, []string{"JWKS_MAX_AGE=1m", "JWT_KEYS_RELOAD_INTERVAL=30s", "JWT_ACCESS_EXPIRES_IN=5m", "JWT_REFRESH_EXPIRES_IN=7d"}, "", "keys", "list", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	signing, refresh, ok := strings.Cut(strings.TrimSpace(out), "\n\n")
	if !ok {
		t.Fatalf("keys list has no refresh section:\n%s", out)
	}
	rlines := strings.Split(refresh, "\n")
	if len(rlines) != 5 || !strings.Contains(rlines[0], "used for new sessions 30s after they appear") || !strings.Contains(rlines[0], "usable 168h30s after replaced") ||
		!strings.HasPrefix(rlines[1], "REFRESH KID") || !strings.Contains(rlines[2], "pending") || !strings.Contains(rlines[3], "pending") || !strings.Contains(rlines[4], "active") {
		t.Fatalf("keys list, refresh keys:\n%s", refresh)
	}
	lines := strings.Split(signing, "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "pre-publication 1m30s") || !strings.Contains(lines[0], "5m30s after retiring") ||
		!strings.HasPrefix(lines[1], "KID") || !strings.Contains(lines[2], "ES256  pending") || !strings.Contains(lines[3], "EdDSA  active") {
		t.Fatalf("keys list:\n%s", out)
	}
	dashes := func(line string) int {
		return len(slices.DeleteFunc(strings.Fields(line), func(f string) bool { return f != "-" }))
	}
	if dashes(lines[2]) != 2 || dashes(lines[3]) != 0 { // pending: no end yet; active: ends when the pending key starts
		t.Fatalf("keys list times:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	rfiles, _ := filepath.Glob(filepath.Join(dir, "*.refresh"))
	if len(files) != 2 || len(rfiles) != 3 {
		t.Fatalf("%d signing key files, %d refresh key files", len(files), len(rfiles))
	}
	if _, err := run(t, nil, "", "keys", "list", "--dir", filepath.Join(dir, "missing")); err == nil {
		t.Fatal("list of a missing dir succeeded")
	}
}

// Keys rotate (docs/design.md, "Signing keys and rotation") while resource servers verify. tokend serves from a
// key directory; a verify.Verifier with a warm cache checks every freshly
// issued token while the directory is rotated twice (ES256 → EdDSA →
// RS256). No verification fails, and none needs an unknown-kid refetch:
// the verifier's one refetch is used up before the first rotation, so
// every new key must reach it through pre-publication alone.
func TestRotationWhileVerifying(t *testing.T) {
	dir := t.TempDir()
	const issuer = "http://tokend.test"
	env := redisEnv(t, "JWT_KEYS_DIR="+dir, "JWKS_MAX_AGE=1s", "JWT_KEYS_RELOAD_INTERVAL=100ms",
		"JWT_ISSUER="+issuer, "JWT_AUDIENCE=orders")
	if out, err := run(t, env, "", "keys", "generate", "--dir", dir); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out, err := run(t, env, "", "clients", "create", "svc", "--grants", "client_credentials")
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`client_secret: (cs_\S+)`).FindStringSubmatch(out)
	if secret == nil {
		t.Fatalf("no secret in %s", out)
	}
	base, logs := serveFor(t, env)

	ctx := context.Background()
	v, err := verify.New(ctx, issuer, verify.WithJWKSURL(base+"/.well-known/jwks.json"),
		verify.WithAudience("orders"), verify.WithRefetchInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issue := func() string {
		status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {secret[1]}})
		if status != http.StatusOK {
			t.Fatalf("token: %d %v", status, m)
		}
		return m["access_token"].(string)
	}
	first := issue()
	if _, err := v.Verify(ctx, first); err != nil { // warm cache
		t.Fatal(err)
	}
	// Use up the unknown-kid refetch allowance for the next hour.
	stranger, err := keys.Ephemeral(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, foreignToken(t, stranger.Current())); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("foreign token: %v", err)
	}

	signers := []string{kidOf(t, first)}
	var rotated []string // kids added by keys rotate
	failures, verified := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for len(rotated) < 2 || signers[len(signers)-1] != rotated[1] {
		if time.Now().After(deadline) {
			t.Fatalf("rotation did not complete: signers %v, rotated %v", signers, rotated)
		}
		// Rotate once the previous rotation's key signs.
		if len(rotated) == len(signers)-1 && len(rotated) < 2 {
			alg := []string{"EdDSA", "RS256"}[len(rotated)]
			out, err := run(t, env, "", "keys", "rotate", "--alg", alg)
			if err != nil {
				t.Fatalf("rotate: %v %s", err, out)
			}
			rotated = append(rotated, regexp.MustCompile(`added \S+ key (\S+)`).FindStringSubmatch(out)[1])
		}
		tok := issue()
		if kid := kidOf(t, tok); kid != signers[len(signers)-1] {
			signers = append(signers, kid)
		}
		if _, err := v.Verify(ctx, tok); err != nil {
			failures++
			t.Errorf("verification %d failed (signers %v): %v", verified+failures, signers, err)
		} else {
			verified++
		}
		time.Sleep(time.Millisecond)
	}
	if failures > 0 || !slices.Equal(signers[1:], rotated) {
		t.Fatalf("%d of %d verifications failed; signers %v, rotated %v", failures, failures+verified, signers, rotated)
	}
	t.Logf("%d tokens verified across 2 rotations, none failed", verified)
	// The first key retired but is still published: its token verifies.
	if _, err := v.Verify(ctx, first); err != nil {
		t.Fatalf("token of the retired key: %v", err)
	}
	var jwks struct{ Keys []struct{ Kid string } }
	resp, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 3 || jwks.Keys[0].Kid != rotated[1] || resp.Header.Get("Cache-Control") != "public, max-age=1" {
		t.Fatalf("JWKS %+v, Cache-Control %q", jwks, resp.Header.Get("Cache-Control"))
	}
	if !strings.Contains(logs.String(), `"msg":"signing with key"`) {
		t.Fatalf("no log of the key changes:\n%s", logs.String())
	}
	out, err = run(t, env, "", "keys", "list")
	out, _, _ = strings.Cut(out, "\n\n") // the signing keys
	if err != nil || strings.Count(out, "retired") != 2 || strings.Count(out, "active") != 1 {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// foreignToken is a well-formed access token signed by a key tokend never
// published.
func foreignToken(t *testing.T, k *keys.Key) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": k.Alg, "kid": k.ID, "typ": "at+jwt"})
	c, _ := json.Marshal(map[string]any{"iss": "http://tokend.test", "sub": "x", "aud": []string{"orders"}, "client_id": "x", "jti": "x",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	s := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sig, err := k.Method.Sign(s, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return s + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Roles given with `tokend users create --role` reach the roles claim of
// the access token and pass verify.RequireRole.
func TestRolesEndToEnd(t *testing.T) {
	env := redisEnv(t, "JWT_ISSUER=http://tokend.test", "JWT_AUDIENCE=orders")
	if _, err := run(t, env, "s3cret-password", "users", "create", "alice", "--role", "admin", "--role", "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "another-password", "users", "create", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "clients", "create", "web", "--public"); err != nil {
		t.Fatal(err)
	}
	base, _ := serveFor(t, env)
	v, err := verify.New(context.Background(), "http://tokend.test", verify.WithJWKSURL(base+"/.well-known/jwks.json"), verify.WithAudience("orders"))
	if err != nil {
		t.Fatal(err)
	}
	admin := v.Middleware(verify.RequireRole("admin")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	for _, u := range []struct {
		name, password string
		roles          []string
		status         int
	}{
		{"alice", "s3cret-password", []string{"admin", "ops"}, http.StatusOK},
		{"bob", "another-password", []string{}, http.StatusForbidden},
	} {
		status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {u.name}, "password": {u.password}})
		if status != http.StatusOK {
			t.Fatalf("sign in %s: %d %v", u.name, status, m)
		}
		at := m["access_token"].(string)
		c, err := v.Verify(context.Background(), at)
		if err != nil || !slices.Equal(c.Roles, u.roles) {
			t.Fatalf("%s: roles %v, %v; want %v", u.name, c.Roles, err, u.roles)
		}
		req := httptest.NewRequest(http.MethodGet, "/admin", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		if rec.Code != u.status {
			t.Fatalf("%s on an admin endpoint: %d, want %d", u.name, rec.Code, u.status)
		}
	}
}

// serve needs a refresh key in JWT_KEYS_DIR: a directory of signing keys
// alone (as made before refresh keys existed) stops start-up with the
// command that fixes it, which then makes the directory complete.
func TestServeNeedsRefreshKey(t *testing.T) {
	dir := t.TempDir()
	k, err := keys.Generate(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Signing.WriteFile(dir, k); err != nil {
		t.Fatal(err)
	}
	env := []string{"JWT_KEYS_DIR=" + dir, "HTTP_ADDR=127.0.0.1:0"}
	_, err = run(t, env, "", "serve", "--dev")
	if err == nil || !strings.Contains(err.Error(), "JWT_KEYS_DIR") || !strings.Contains(err.Error(), "keys rotate --only refresh") {
		t.Fatalf("serve without a refresh key: %v", err)
	}
	out, err := run(t, env, "", "keys", "rotate", "--only", "refresh")
	if err != nil || !strings.Contains(out, "new sessions use it at once") {
		t.Fatalf("rotate --only refresh: %v\n%s", err, out)
	}
	base, logs := serveFor(t, []string{"JWT_KEYS_DIR=" + dir, "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "--dev")
	status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"demo-app"}, "username": {"demo"}, "password": {"demo-password"}})
	if status != 200 || !strings.HasPrefix(m["refresh_token"].(string), "rt_") {
		t.Fatalf("sign in: %d %v", status, m)
	}
	if !strings.Contains(logs.String(), `"msg":"refresh keys loaded"`) {
		t.Fatalf("no refresh key log:\n%s", logs.String())
	}
}

// Every way a key directory can be unfit to serve from stops start-up
// with the command that fixes it, and that command, run as printed, makes
// it fit: a missing directory, an empty one, one with files that are not
// keys, one with signing keys only and one with refresh keys only (where
// the advice used to be a command after which start-up failed again,
// without a hint).
func TestKeysDirErrorsNameTheFix(t *testing.T) {
	withSigning := func(t *testing.T, dir string) {
		k, err := keys.Generate(verify.ES256)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Signing.WriteFile(dir, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the JWT_KEYS_DIR to use
		fix   string
	}{
		{"missing", func(t *testing.T, dir string) string { return filepath.Join(dir, "keys") }, "keys generate --dir"},
		{"empty", func(t *testing.T, dir string) string { return dir }, "keys generate --dir"},
		{"no key files", func(t *testing.T, dir string) string {
			writeFiles(t, dir, "README", ".gitkeep")
			return dir
		}, "keys generate --dir"},
		{"signing keys only", func(t *testing.T, dir string) string { withSigning(t, dir); return dir }, "keys rotate --only refresh --dir"},
		{"refresh keys only", func(t *testing.T, dir string) string {
			if _, err := keys.Refresh.WriteFile(dir, keys.GenerateRefreshKey()); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "keys rotate --only signing --dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := c.setup(t, t.TempDir())
			env := []string{"JWT_KEYS_DIR=" + dir, "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}
			_, err := run(t, append(env, "HTTP_ADDR=127.0.0.1:0"), "", "serve", "--dev")
			if err == nil || !strings.Contains(err.Error(), c.fix+" "+dir+"`") || !strings.Contains(err.Error(), "JWT_KEYS_GENERATE=true") {
				t.Fatalf("serve: %v; want the advice %q and JWT_KEYS_GENERATE=true", err, c.fix)
			}
			fix := regexp.MustCompile("`tokend ([^`]+)`").FindStringSubmatch(err.Error())
			if fix == nil {
				t.Fatalf("no command in %v", err)
			}
			// Run the command in an environment without JWT_KEYS_DIR: the
			// advice must name the directory itself.
			if out, err := run(t, nil, "", strings.Fields(fix[1])...); err != nil {
				t.Fatalf("tokend %s: %v\n%s", fix[1], err, out)
			}
			serveFor(t, env, "--dev")
		})
	}
	if _, err := run(t, nil, "", "keys", "list", "--dir", filepath.Join(t.TempDir(), "missing")); err == nil ||
		!strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "keys generate --dir") {
		t.Fatalf("keys list of a missing directory: %v", err)
	}
}

func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// JWT_KEYS_GENERATE looks at key files, not at any file: a directory
// holding a README, a .gitkeep and lost+found gets both kinds of key; one
// that lacks a kind gets that kind; one with both gets nothing, so a
// restart adds no key.
func TestKeysGenerateLooksAtKeyFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, "README", ".gitkeep")
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("", []string{"JWT_KEYS_DIR=" + dir, "JWT_KEYS_GENERATE=true", "JWT_SIGNING_ALG=EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	count := func() (pem, refresh int) {
		p, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
		r, _ := filepath.Glob(filepath.Join(dir, "*.refresh"))
		return len(p), len(r)
	}
	generate := func() string {
		t.Helper()
		var logs bytes.Buffer
		if err := generateMissingKeys(cfg, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	if logs := generate(); !strings.Contains(logs, "generated EdDSA key") || !strings.Contains(logs, "generated refresh key") {
		t.Fatalf("a directory without key files: %s", logs)
	}
	if p, r := count(); p != 1 || r != 1 {
		t.Fatalf("%d signing and %d refresh key files", p, r)
	}
	if logs := generate(); logs != "" {
		t.Fatalf("a directory with both kinds: %s", logs)
	}
	refreshFiles, _ := filepath.Glob(filepath.Join(dir, "*.refresh"))
	if err := os.Remove(refreshFiles[0]); err != nil {
		t.Fatal(err)
	}
	if logs := generate(); strings.Contains(logs, "EdDSA key") || !strings.Contains(logs, "generated refresh key") {
		t.Fatalf("a directory without refresh keys: %s", logs)
	}
	if p, r := count(); p != 1 || r != 1 {
		t.Fatalf("%d signing and %d refresh key files", p, r)
	}
	// A bad key file stops it before it writes anything.
	writeFiles(t, dir, "20250601T120000Z-"+strings.Repeat("a", 43)+".pem")
	if err := os.Remove(mustGlob(t, dir, "*.refresh")); err != nil {
		t.Fatal(err)
	}
	if err := generateMissingKeys(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "JWT_KEYS_GENERATE") {
		t.Fatalf("a bad key file: %v", err)
	}
	if _, r := count(); r != 0 {
		t.Fatal("wrote a refresh key beside a bad key file")
	}
}

func mustGlob(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) != 1 {
		t.Fatalf("%s: %v", pattern, m)
	}
	return m[0]
}

// keys generate into a directory that has keys says that the new key is
// pending, when it starts signing and until when the active key signs,
// and keys list agrees.
func TestKeysGenerateIntoKeysSaysWhen(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, nil, "", "keys", "generate", "--dir", dir); err != nil || !strings.Contains(out, "it is active: it signs at once") ||
		!strings.Contains(out, "generated refresh key") {
		t.Fatalf("first generate: %v\n%s", err, out)
	}
	out, err := run(t, nil, "", "keys", "generate", "--dir", dir, "--alg", "EdDSA")
	if err != nil || strings.Contains(out, "refresh key") {
		t.Fatalf("second generate: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`generated EdDSA key (\S+)\n.*\nit is pending: published within 15s; signs from (\S+) \(in 5m1[5-7]s\)\nactive key (\S+) signs until (\S+) and stays published until \S+\n$`).FindStringSubmatch(out)
	if m == nil || m[2] != m[4] {
		t.Fatalf("second generate:\n%s", out)
	}
	list, err := run(t, nil, "", "keys", "list", "--dir", dir)
	if err != nil || !regexp.MustCompile(m[1]+`\s+EdDSA\s+pending\s+\S+\s+`+regexp.QuoteMeta(m[2])).MatchString(list) ||
		!regexp.MustCompile(m[3]+`\s+ES256\s+active`).MatchString(list) {
		t.Fatalf("keys list:\n%s", list)
	}
}
