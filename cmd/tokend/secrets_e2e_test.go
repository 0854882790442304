package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testredis"
)

// A full run of the real binary — serve and the CLI: a user created with
// the password on stdin, clients, sign-ins, refresh, reuse, introspection,
// revocation, logout, failed and rate-limited sign-ins, a password in a
// query string, admin commands, and a Redis outage that makes go-redis log
// — writes every line of its logs as JSON, and none of them contains a
// password, a client secret, an access token, a refresh token or its
// secret part, or the Redis password.
func TestNoSecretsInLogsEndToEnd(t *testing.T) {
	bin := tokendBinary(t)
	const (
		redisPassword = "redis-pw-5c1d3a"
		userPassword  = "user-password-7e2b9f"
	)
	srv := testredis.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	if err := admin.ConfigSet(context.Background(), "requirepass", redisPassword).Err(); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	env := []string{
		"REDIS_URL=redis://:" + redisPassword + "@" + srv.Addr + "/0", "JWT_KEYS_DIR=" + t.TempDir(),
		"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "LOG_LEVEL=debug",
		"RATE_LIMIT_LOGIN_PER_ACCOUNT_IP=3/1h", "JWT_ISSUER=http://tokend.test",
	}
	var cliOut []string // every CLI output that must be free of secrets
	run := func(stdin string, args ...string) cliResult {
		r := mustRunBin(t, bin, env, stdin, args...)
		cliOut = append(cliOut, r.stdout, r.stderr)
		return r
	}
	envKeys := env[1][len("JWT_KEYS_DIR="):]
	run("", "keys", "generate", "--dir", envKeys)
	run(userPassword+"\n", "users", "create", "alice", "--role", "admin")
	run("", "clients", "create", "web", "--public")
	created := mustRunBin(t, bin, env, "", "clients", "create", "backend", "--grants", "password,refresh_token,client_credentials", "--scopes", "read write")
	m := regexp.MustCompile(`client_secret: (cs_[A-Za-z0-9_-]{43})`).FindStringSubmatch(created.stdout)
	if m == nil {
		t.Fatalf("no client secret printed: %q", created.stdout)
	}
	clientSecret := m[1]
	cliOut = append(cliOut, created.stderr, strings.Replace(created.stdout, clientSecret, "", 1)) // printed once, by design

	serve := startServe(t, bin, env)
	hc := &http.Client{Timeout: 10 * time.Second}
	u := func(p string) string { return serve.base + p }
	backend := []string{"backend", clientSecret}
	secrets := []string{redisPassword, userPassword, clientSecret}
	keep := func(r reply) reply {
		for _, k := range []string{"access_token", "refresh_token"} {
			if s := r.str(k); s != "" {
				secrets = append(secrets, s, s[len(s)-43:]) // the token, and the refresh secret or JWT signature tail
			}
		}
		return r
	}
	signIn := func(basic ...string) reply {
		form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {userPassword}}
		if len(basic) == 0 {
			form.Set("client_id", "web")
		}
		r := keep(post(t, hc, u("/oauth/token"), form, basic...))
		if r.status != 200 {
			t.Fatalf("sign in: %d %s", r.status, r.body)
		}
		return r
	}
	want := func(r reply, status int) reply {
		t.Helper()
		if r.status != status {
			t.Fatalf("got %d %s, want %d", r.status, r.body, status)
		}
		return r
	}

	a := signIn()
	b := signIn(backend...)
	refresh := func(rt string, basic ...string) reply {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if len(basic) == 0 {
			form.Set("client_id", "web")
		}
		return keep(post(t, hc, u("/oauth/token"), form, basic...))
	}
	a2 := want(refresh(a.str("refresh_token")), 200)
	want(refresh(a.str("refresh_token")), 200) // a retry within the reuse window: the same token
	want(refresh(a2.str("refresh_token")), 200)
	want(refresh(a.str("refresh_token")), 400) // reuse: its child has been used; the session is revoked
	a3 := signIn()
	want(refresh(b.str("refresh_token"), backend...), 200)
	if r := post(t, hc, u("/oauth/introspect"), url.Values{"token": {a3.str("access_token")}}, backend...); r.json["active"] != true {
		t.Fatalf("introspect: %s", r.body)
	}
	post(t, hc, u("/oauth/introspect"), url.Values{"token": {a2.str("refresh_token")}}, backend...)
	want(post(t, hc, u("/oauth/revoke"), url.Values{"client_id": {"web"}, "token": {a3.str("refresh_token")}}), 200)
	a4 := signIn()
	want(post(t, hc, u("/logout"), url.Values{"client_id": {"web"}, "refresh_token": {a4.str("refresh_token")}, "scope": {"global"}}), 204)
	keep(want(post(t, hc, u("/oauth/token"), url.Values{"grant_type": {"client_credentials"}}, backend...), 200))
	want(post(t, hc, u("/oauth/token"), url.Values{"grant_type": {"client_credentials"}}, "backend", clientSecret+"x"), 401)
	want(post(t, hc, u("/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"nobody"}, "password": {userPassword}}), 400)
	for i := 0; i < 3; i++ {
		want(post(t, hc, u("/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {userPassword + "-wrong"}}), 400)
	}
	want(post(t, hc, u("/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {userPassword}}), 429)
	want(post(t, hc, u("/oauth/token?password="+userPassword+"&client_secret="+clientSecret), url.Values{"grant_type": {"password"}}), 400)
	req, _ := http.NewRequest(http.MethodGet, u("/healthz"), nil)
	req.Header.Set("Authorization", "Bearer "+a2.str("access_token"))
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
	run("", "sessions", "list", "alice")
	run("", "sessions", "revoke", "alice", "--all")
	run("", "users", "list")
	run("", "clients", "list")
	run("", "config")

	// Redis goes away: go-redis logs its dial failures, through slog.
	srv.Kill()
	want(refresh(a2.str("refresh_token")), 503)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(serve.out.String(), `"component":"go-redis"`) {
		if time.Now().After(deadline) {
			t.Fatalf("go-redis logged nothing through slog:\n%s", serve.out.String())
		}
		want(refresh(a2.str("refresh_token")), 503)
		time.Sleep(50 * time.Millisecond)
	}
	serve.stop()

	logs := serve.out.String()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not structured: %q", line)
		}
	}
	for _, ev := range []string{"signin.success", "signin.failure", "signin.rate_limited", "refresh", "refresh.retry", "refresh.reuse_detected", "revoke", "logout"} {
		if !strings.Contains(logs, `"event":"`+ev+`"`) {
			t.Errorf("no %s audit event in the logs", ev)
		}
	}
	// Nor does the refresh key: its file's PEM body, or any line of it.
	rkeys, _ := filepath.Glob(filepath.Join(envKeys, "*.refresh"))
	if len(rkeys) != 1 {
		t.Fatalf("%d refresh key files", len(rkeys))
	}
	pemData, err := os.ReadFile(rkeys[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(pemData), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	all := append([]string{logs}, cliOut...)
	for _, s := range secrets {
		for i, out := range all {
			if strings.Contains(out, s) {
				t.Errorf("a secret (%d bytes, starting %q) appears in output %d", len(s), s[:4], i)
			}
		}
	}
	t.Logf("%d log lines and %d CLI outputs checked for %d secrets", strings.Count(logs, "\n"), len(cliOut), len(secrets))
}
