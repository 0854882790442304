package main

import (
	"context"
	"crypto/subtle"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

// adminEnv is redisEnv with the store the CLI uses, opened here too.
func adminEnv(t *testing.T) ([]string, store.Store) {
	t.Helper()
	prefix := testredis.Prefix(t)
	env := append([]string{"REDIS_KEY_PREFIX=" + prefix}, redisEnv(t)...) // the first occurrence wins
	st, err := redisstore.Open(context.Background(), testredis.URL(t), redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return env, st
}

func TestUsersSetPasswordAndRoles(t *testing.T) {
	env, st := adminEnv(t)
	ctx := context.Background()
	if out, err := run(t, env, "old-password-1\n", "users", "create", "alice", "--role", "reader"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	u, err := st.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 3; i++ {
		if _, err := st.CreateSession(ctx, store.NewSession{Session: store.Session{ID: token.NewID(), UserID: u.ID, ClientID: "web",
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}

	out, err := run(t, env, "new-password-2\n", "users", "set-password", "ALICE")
	if err != nil || !strings.Contains(out, "set the password of user alice; ended 3 sessions") {
		t.Fatalf("set-password: %v %s", err, out)
	}
	if strings.Contains(out, "new-password-2") {
		t.Fatal("the password was echoed")
	}
	u2, err := st.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	h := credential.NewHasher(credential.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 1)
	if ok, err := h.Verify(ctx, "new-password-2", u2.PasswordHash); !ok || err != nil {
		t.Fatalf("the new password does not verify: %v", err)
	}
	if ok, _ := h.Verify(ctx, "old-password-1", u2.PasswordHash); ok {
		t.Fatal("the old password still verifies")
	}
	if live, err := st.ListSessions(ctx, u.ID, time.Now()); err != nil || len(live) != 0 {
		t.Fatalf("sessions after the password change: %d, %v", len(live), err)
	}
	if _, err := run(t, env, "short\n", "users", "set-password", "alice"); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("short password: %v", err)
	}
	if _, err := run(t, env, "qwertyuiop\n", "users", "set-password", "alice"); err == nil || !strings.Contains(err.Error(), "commonly used") {
		t.Fatalf("set-password to a common password: %v", err)
	}
	if _, err := run(t, env, "long-enough-pw\n", "users", "set-password", "nobody"); err == nil || !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := run(t, env, "", "users", "set-password", "alice", "pw-on-the-command-line"); err == nil {
		t.Fatal("a password on the command line was accepted")
	}

	out, err = run(t, env, "", "users", "roles", "alice", "--add", "admin", "--add", "ops", "--remove", "reader", "--add", "admin")
	if err != nil || !strings.Contains(out, "user alice roles: admin,ops\n") {
		t.Fatalf("roles: %v %s", err, out)
	}
	if out, _ := run(t, env, "", "users", "roles", "alice"); !strings.Contains(out, "roles: admin,ops") {
		t.Fatalf("roles (show): %s", out)
	}
	if u3, _ := st.UserByName(ctx, "alice"); strings.Join(u3.Roles, ",") != "admin,ops" || u3.PasswordHash != u2.PasswordHash {
		t.Fatalf("stored user after roles: %+v", u3)
	}
	if _, err := run(t, env, "", "users", "roles", "alice", "--add", "two words"); err == nil {
		t.Fatal("a role with a space was accepted")
	}
}

func TestClientsRotateSecretAndUpdate(t *testing.T) {
	env, st := adminEnv(t)
	ctx := context.Background()
	secretRe := regexp.MustCompile(`client_secret: (cs_[A-Za-z0-9_-]{43})\n`)
	out, err := run(t, env, "", "clients", "create", "svc", "--grants", "client_credentials", "--scopes", "read")
	m := secretRe.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("create: %v %s", err, out)
	}
	old := m[1]
	out, err = run(t, env, "", "clients", "rotate-secret", "svc")
	m = secretRe.FindStringSubmatch(out)
	if err != nil || m == nil || m[1] == old {
		t.Fatalf("rotate-secret: %v %s", err, out)
	}
	cl, err := st.Client(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if subtle.ConstantTimeCompare(cl.SecretHash, credential.HashClientSecret(m[1])) != 1 || credential.VerifyClientSecret(old, cl.SecretHash) {
		t.Fatal("the stored hash is not the new secret's")
	}
	// The rotation ends the client's client_credentials tokens until now.
	if cl.TokensNotBefore.IsZero() || time.Since(cl.TokensNotBefore) > time.Minute {
		t.Fatalf("TokensNotBefore after rotate-secret: %v", cl.TokensNotBefore)
	}
	if _, err := run(t, env, "", "clients", "create", "web", "--public"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "clients", "rotate-secret", "web"); err == nil || !strings.Contains(err.Error(), "public") {
		t.Fatalf("rotate-secret of a public client: %v", err)
	}
	if _, err := run(t, env, "", "clients", "rotate-secret", "nobody"); err == nil || !strings.Contains(err.Error(), `no client "nobody"`) {
		t.Fatalf("rotate-secret of an unknown client: %v", err)
	}

	out, err = run(t, env, "", "clients", "update", "svc", "--grants", "client_credentials,password", "--scopes", "read admin")
	if err != nil || !strings.Contains(out, `updated client svc: grants client_credentials,password; scopes "read admin"`) {
		t.Fatalf("update: %v %s", err, out)
	}
	if out, err := run(t, env, "", "clients", "update", "svc", "--scopes", ""); err != nil || !strings.Contains(out, `scopes ""`) {
		t.Fatalf("update scopes only: %v %s", err, out)
	}
	cl2, _ := st.Client(ctx, "svc")
	if strings.Join(cl2.Grants, ",") != "client_credentials,password" || cl2.Scopes != nil || string(cl2.SecretHash) != string(cl.SecretHash) {
		t.Fatalf("stored client after update: %+v", cl2)
	}
	// Taking the scopes away moved TokensNotBefore on; adding would not.
	if !cl2.TokensNotBefore.After(cl.TokensNotBefore) {
		t.Fatalf("TokensNotBefore after scopes were taken away: %v, before %v", cl2.TokensNotBefore, cl.TokensNotBefore)
	}
	if _, err := run(t, env, "", "clients", "update", "svc", "--scopes", "read"); err != nil {
		t.Fatal(err)
	}
	if cl3, _ := st.Client(ctx, "svc"); !cl3.TokensNotBefore.Equal(cl2.TokensNotBefore) {
		t.Fatalf("adding a scope moved TokensNotBefore: %v, before %v", cl3.TokensNotBefore, cl2.TokensNotBefore)
	}
	for _, bad := range [][]string{
		{"update", "web", "--grants", "client_credentials"}, // public
		{"update", "svc", "--grants", "implicit"},
		{"update", "svc"},
		{"update", "nobody", "--scopes", "read"},
	} {
		if _, err := run(t, env, "", append([]string{"clients"}, bad...)...); err == nil {
			t.Errorf("clients %v succeeded", bad)
		}
	}
}

// `users unlock` clears the account-wide ceiling (and, with --ip, the
// account's limit at an address) that the server consults, keyed alike.
func TestUsersUnlock(t *testing.T) {
	env, _ := adminEnv(t)
	if _, err := run(t, env, "a-fine-long-password\n", "users", "create", "Alice"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	prefix := strings.TrimPrefix(env[0], "REDIS_KEY_PREFIX=") // the CLI's
	lim := ratelimit.NewRedis(testredis.Client(t), prefix, ratelimit.Limits{
		PerAccount: ratelimit.Rate{N: 1, Period: 24 * time.Hour}, PerAccountIP: ratelimit.Rate{N: 1, Period: time.Hour},
	})
	attempt := func(ip string) string {
		t.Helper()
		_, limit, err := lim.Attempt(ctx, "alice", ip)
		if err != nil {
			t.Fatal(err)
		}
		return limit
	}
	if attempt("192.0.2.1") != "" || attempt("192.0.2.1") != ratelimit.LimitAccountIP || attempt("198.51.100.1") != ratelimit.LimitAccount {
		t.Fatal("the limits do not hold alice back")
	}
	out, err := run(t, env, "", "users", "unlock", "ALICE", "--ip", "192.0.2.1")
	if err != nil || !strings.Contains(out, "cleared the sign-in limit of user alice (the account-wide ceiling and at 192.0.2.1)") {
		t.Fatalf("unlock: %v %s", err, out)
	}
	if l := attempt("192.0.2.1"); l != "" {
		t.Fatalf("after unlock --ip: refused by %s", l)
	}
	if _, err := run(t, env, "", "users", "unlock", "alice"); err != nil {
		t.Fatal(err)
	}
	if l := attempt("198.51.100.2"); l != "" { // a new address: only the ceiling applies
		t.Fatalf("after unlock: refused by %s", l)
	}
	if _, err := run(t, env, "", "users", "unlock", "nobody"); err == nil || !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Fatalf("unlock of an unknown user: %v", err)
	}
	if _, err := run(t, env, "", "users", "unlock", "alice", "--ip", "not-an-ip"); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Fatalf("unlock --ip not-an-ip: %v", err)
	}
}
