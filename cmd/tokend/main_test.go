package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
)

// run executes the CLI with the given environment and stdin.
func run(t *testing.T, environ []string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(strings.NewReader(stdin), &out, &errb, environ)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

func redisEnv(t *testing.T, extra ...string) []string {
	return append([]string{
		"REDIS_URL=" + testredis.URL(t),
		"REDIS_KEY_PREFIX=" + testredis.Prefix(t),
		"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1",
	}, extra...)
}

func TestUsersAndClientsCLI(t *testing.T) {
	env := redisEnv(t)
	out, err := run(t, env, "s3cret-password\n", "users", "create", "Alice@Example.com", "--role", "admin", "--role", "ops")
	if err != nil || !strings.Contains(out, "created user") {
		t.Fatalf("users create: %v %s", err, out)
	}
	if _, err := run(t, env, "another-password", "users", "create", "alice@example.com"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate user: %v", err)
	}
	// A client named like a user would share the user's sub: refused.
	uid := strings.TrimSuffix(out[strings.Index(out, "(id ")+4:], ")\n")
	if _, err := run(t, env, "", "clients", "create", uid, "--grants", "client_credentials"); err == nil || !strings.Contains(err.Error(), "form of a user id") {
		t.Fatalf("a client with the id %q of a user: %v", uid, err)
	}
	if _, err := run(t, env, "short", "users", "create", "bob"); err == nil || !strings.Contains(err.Error(), "at least 10") {
		t.Fatalf("short password: %v", err)
	}
	if _, err := run(t, env, "Password1!", "users", "create", "bob"); err == nil || !strings.Contains(err.Error(), "commonly used") {
		t.Fatalf("common password: %v", err)
	}
	// A look-alike of an existing name (all Cyrillic): refused, saying why.
	if out, err := run(t, env, "another-password", "users", "create", "ace"); err != nil {
		t.Fatalf("users create ace: %v %s", err, out)
	}
	if _, err := run(t, env, "another-password", "users", "create", "\u0430\u0441\u0435"); err == nil || !strings.Contains(err.Error(), "looks like an existing user") {
		t.Fatalf("look-alike user: %v", err)
	}
	out, err = run(t, env, "", "users", "list")
	if err != nil || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "admin,ops") || !strings.Contains(out, "active") {
		t.Fatalf("users list: %v %s", err, out)
	}
	if out, err := run(t, env, "", "users", "disable", "alice@example.com"); err != nil || !strings.Contains(out, "disabled") {
		t.Fatalf("disable: %v %s", err, out)
	}
	if out, _ := run(t, env, "", "users", "list"); !strings.Contains(out, "disabled") {
		t.Fatalf("list after disable: %s", out)
	}
	if _, err := run(t, env, "", "users", "enable", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "users", "delete", "nobody"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Fatalf("delete unknown: %v", err)
	}

	out, err = run(t, env, "", "clients", "create", "svc", "--grants", "client_credentials", "--scopes", "read write")
	if err != nil || !regexp.MustCompile(`client_secret: cs_[A-Za-z0-9_-]{43}\n`).MatchString(out) {
		t.Fatalf("clients create: %v %s", err, out)
	}
	if out, err := run(t, env, "", "clients", "create", "web", "--public"); err != nil || strings.Contains(out, "secret:") {
		t.Fatalf("public client: %v %s", err, out)
	}
	if _, err := run(t, env, "", "clients", "create", "bad", "--public", "--grants", "client_credentials"); err == nil {
		t.Fatal("public client_credentials client accepted")
	}
	if _, err := run(t, env, "", "clients", "create", "bad", "--grants", "implicit"); err == nil {
		t.Fatal("unknown grant accepted")
	}
	out, err = run(t, env, "", "clients", "list")
	if err != nil || !strings.Contains(out, "svc") || !strings.Contains(out, "confidential") || !strings.Contains(out, "public") || strings.Contains(out, "cs_") {
		t.Fatalf("clients list: %v %s", err, out)
	}
	if _, err := run(t, env, "", "clients", "delete", "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "clients", "delete", "svc"); err == nil {
		t.Fatal("deleting a missing client succeeded")
	}
	if out, err := run(t, env, "", "users", "delete", "alice@example.com"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %v %s", err, out)
	}
}

func TestAdminCommandsNeedRedis(t *testing.T) {
	_, err := run(t, nil, "a long passphrase", "users", "create", "alice")
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL is not set") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigVersionKeys(t *testing.T) {
	out, err := run(t, []string{"REDIS_URL=redis://:hunter2@127.0.0.1:6379/0", "JWT_REFRESH_EXPIRES_IN=7d"}, "", "config")
	if err != nil || strings.Contains(out, "hunter2") || !strings.Contains(out, "JWT_REFRESH_EXPIRES_IN=7d") {
		t.Fatalf("config: %v %s", err, out)
	}
	if _, err := run(t, []string{"JWT_REFRESH_EXPIRES_IN=3x"}, "", "config"); err == nil || !strings.Contains(err.Error(), "JWT_REFRESH_EXPIRES_IN") {
		t.Fatalf("invalid value: %v", err)
	}
	if out, err := run(t, nil, "", "version"); err != nil || !strings.HasPrefix(out, "tokend ") {
		t.Fatalf("version: %v %s", err, out)
	}
	dir := t.TempDir()
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		if out, err := run(t, nil, "", "keys", "generate", "--dir", dir, "--alg", alg); err != nil || !strings.Contains(out, "generated "+alg) {
			t.Fatalf("keys generate %s: %v %s", alg, err, out)
		}
	}
	if _, err := run(t, nil, "", "keys", "generate", "--dir", dir, "--alg", "HS256"); err == nil {
		t.Fatal("HS256 accepted")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	rfiles, _ := filepath.Glob(filepath.Join(dir, "*.refresh"))
	if len(files) != 3 || len(rfiles) != 1 { // a refresh key only when there is none
		t.Fatalf("%d key files, %d refresh key files", len(files), len(rfiles))
	}
}

// serveFor starts `tokend serve` in-process and returns its base URL.
func serveFor(t *testing.T, environ []string, args ...string) (string, *testkit.SyncBuffer) {
	t.Helper()
	return serveOn(t, "127.0.0.1", environ, args...)
}

// serveOn is serveFor listening on host (any address of 127.0.0.0/8).
func serveOn(t *testing.T, host string, environ []string, args ...string) (string, *testkit.SyncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out := &testkit.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	root := newRoot(strings.NewReader(""), out, out, append(environ, "HTTP_ADDR="+addr))
	root.SetArgs(append([]string{"serve"}, args...))
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatalf("server did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return base, out
}

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// JWT_REFRESH_EXPIRES_IN reaches the server: a 1 s lifetime expires.
func TestServeRefreshLifetimeFromEnvironment(t *testing.T) {
	env := redisEnv(t, "JWT_REFRESH_EXPIRES_IN=1s", "JWT_ACCESS_EXPIRES_IN=1s", "JWT_ISSUER=http://tokend.test")
	if _, err := run(t, env, "s3cret-password", "users", "create", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "clients", "create", "web", "--public"); err != nil {
		t.Fatal(err)
	}
	base, _ := serveFor(t, env)
	status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"s3cret-password"}})
	if status != 200 || m["expires_in"] != float64(1) {
		t.Fatalf("sign in: %d %v", status, m)
	}
	time.Sleep(1100 * time.Millisecond)
	status, m = postForm(t, base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {m["refresh_token"].(string)}})
	if status != 400 || m["error"] != "invalid_grant" || !strings.Contains(m["error_description"].(string), "expired") {
		t.Fatalf("after lifetime: %d %v", status, m)
	}
}

// make run: the dev server seeds a demo user and client and prints how to
// get a token; the printed curl line works.
func TestServeDev(t *testing.T) {
	base, out := serveFor(t, []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "--dev")
	time.Sleep(50 * time.Millisecond)
	if !strings.Contains(out.String(), "curl -s") || !strings.Contains(out.String(), "data is lost on restart") {
		t.Fatalf("dev banner or warning missing:\n%s", out.String())
	}
	status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {devClient}, "username": {devUser}, "password": {devPassword}})
	if status != 200 || m["refresh_token"] == nil {
		t.Fatalf("dev sign in: %d %v", status, m)
	}
	if _, err := run(t, []string{"REDIS_URL=redis://127.0.0.1:1/0"}, "", "serve", "--dev"); err == nil {
		t.Fatal("--dev with REDIS_URL accepted")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	removeBinary() // built by tokendBinary for the multi-process tests
	os.Exit(code)
}

// With no JWT_ISSUER the issuer, the metadata URLs and the audience follow
// HTTP_ADDR, and `tokend healthcheck` probes HTTP_ADDR's host, not always
// 127.0.0.1.
func TestIssuerFromHTTPAddr(t *testing.T) {
	base, out := serveOn(t, "127.0.0.2", []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "--dev")
	resp, err := http.Get(base + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	err = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if err != nil || md["issuer"] != base || md["jwks_uri"] != base+"/.well-known/jwks.json" {
		t.Fatalf("metadata for a server on %s: %v %v", base, err, md)
	}
	if !strings.Contains(out.String(), "JWT_ISSUER is not set") {
		t.Errorf("serve does not say the issuer is derived:\n%s", out.String())
	}
	status, m := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {devClient}, "username": {devUser}, "password": {devPassword}})
	if status != 200 {
		t.Fatalf("sign in: %d %v", status, m)
	}
	at, _ := m["access_token"].(string)
	_, claims := testkit.Decode(t, at)
	if aud, _ := claims["aud"].([]any); claims["iss"] != base || len(aud) != 1 || aud[0] != base {
		t.Fatalf("claims %v: want iss and aud %q (RFC 9068 §2.2: aud is required)", claims, base)
	}
	addr := strings.TrimPrefix(base, "http://")
	if out, err := run(t, []string{"HTTP_ADDR=" + addr}, "", "healthcheck"); err != nil {
		t.Fatalf("healthcheck with HTTP_ADDR=%s: %v %s", addr, err, out)
	}
}
