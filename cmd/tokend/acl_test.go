package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testredis"
)

// TestEveryKeyUnderThePrefix runs tokend (CLI and server) as a Redis ACL
// user that may touch only keys under REDIS_KEY_PREFIX, as
// docs/operations.md recommends: sign-up, sign-in (rate limited), refresh,
// logout, revoke and the admin commands all work, so no key lives outside
// the prefix. The user is made on the shared test Redis with a name of its
// own and deleted at the end.
func TestEveryKeyUnderThePrefix(t *testing.T) {
	ctx := context.Background()
	admin := testredis.Client(t)
	prefix := testredis.Prefix(t)
	var b [8]byte
	_, _ = rand.Read(b[:])
	user, pass := "tokendtest-"+hex.EncodeToString(b[:4]), hex.EncodeToString(b[4:])+"-acl-password"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">"+pass, "~"+prefix+"*", "&*", "+@all").Err(); err != nil {
		t.Skipf("this Redis cannot make ACL users: %v", err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	base, err := url.Parse(testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	base.User = url.UserPassword(user, pass)
	// Only the ACL user: prove it cannot write outside the prefix.
	opt, err := redis.ParseURL(base.String())
	if err != nil {
		t.Fatal(err)
	}
	limited := redis.NewClient(opt)
	defer limited.Close()
	if err := limited.Set(ctx, "outside-the-prefix", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("the ACL user wrote outside its prefix: %v", err)
	}

	env := []string{
		"REDIS_URL=" + base.String(), "REDIS_KEY_PREFIX=" + prefix,
		"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "ALLOW_SIGNUP=true",
	}
	if out, err := run(t, env, "correct-horse-battery", "users", "create", "alice", "--role", "admin"); err != nil {
		t.Fatalf("users create: %v %s", err, out)
	}
	if out, err := run(t, env, "", "clients", "create", "web", "--public", "--grants", "password,refresh_token"); err != nil {
		t.Fatalf("clients create: %v %s", err, out)
	}
	srv, logs := serveFor(t, env)
	if status, m := postForm(t, srv+"/users", url.Values{"username": {"bob"}, "password": {"a fine long password"}}); status != http.StatusCreated {
		t.Fatalf("signup: %d %v", status, m)
	}
	// A wrong password first: the rate limiter's buckets are written.
	if status, m := postForm(t, srv+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"wrong-password"}}); status != http.StatusBadRequest {
		t.Fatalf("wrong password: %d %v\n%s", status, m, logs.String())
	}
	status, m := postForm(t, srv+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"correct-horse-battery"}})
	if status != http.StatusOK {
		t.Fatalf("sign in as the ACL user: %d %v\n%s", status, m, logs.String())
	}
	status, m = postForm(t, srv+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {m["refresh_token"].(string)}})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, m)
	}
	if status, m := postForm(t, srv+"/oauth/revoke", url.Values{"client_id": {"web"}, "token": {m["access_token"].(string)}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, m)
	}
	_, m = postForm(t, srv+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"correct-horse-battery"}})
	if status, m := postForm(t, srv+"/logout", url.Values{"client_id": {"web"}, "refresh_token": {m["refresh_token"].(string)}, "scope": {"global"}}); status != http.StatusNoContent {
		t.Fatalf("logout: %d %v", status, m)
	}
	for _, args := range [][]string{{"users", "list"}, {"clients", "list"}, {"sessions", "list", "alice"}, {"users", "disable", "bob"}, {"users", "delete", "bob"}} {
		if out, err := run(t, env, "", args...); err != nil {
			t.Errorf("tokend %s as the ACL user: %v %s", strings.Join(args, " "), err, out)
		}
	}
	if strings.Contains(logs.String(), "NOPERM") {
		t.Errorf("the server was refused a key:\n%s", logs.String())
	}
	// And the keys really are there, under the prefix.
	keys, err := admin.Keys(ctx, prefix+"rate:*").Result()
	if err != nil || len(keys) == 0 {
		t.Errorf("no rate-limit keys under %s: %v %v", prefix, keys, err)
	}
}
