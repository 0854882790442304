package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The three ways a role reaches a user — users create --role, users roles
// --add and the bootstrap file — check it with the one rule,
// credential.Roles: a role with any kind of space in it ("ops\radmin" would
// be stored, and read back, as ops and admin) or listed twice is refused,
// and nothing is written.
func TestRolesOneRule(t *testing.T) {
	env, st := adminEnv(t)
	ctx := context.Background()
	if out, err := run(t, env, "correct-horse-battery\n", "users", "create", "alice", "--role", "ops"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ role, want string }{
		{"ops\radmin", "may contain only"},
		{"ops\u00a0admin", "may contain only"},
		{"ops\tadmin", "may contain only"},
		{"", "1 to 64"},
	} {
		if out, err := run(t, env, "correct-horse-battery\n", "users", "create", "bob", "--role", tc.role); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("users create --role %q: %v %s; want an error with %q", tc.role, err, out, tc.want)
		}
		if _, err := st.UserByName(ctx, "bob"); err == nil {
			t.Fatalf("users create --role %q created the user", tc.role)
		}
		if out, err := run(t, env, "", "users", "roles", "alice", "--add", tc.role); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("users roles --add %q: %v %s; want an error with %q", tc.role, err, out, tc.want)
		}
		path := filepath.Join(dir, "bootstrap.yaml")
		yaml := "users:\n  - username: carol\n    password_env: CAROL_PASSWORD\n    roles: [\"" + strings.NewReplacer("\r", `\r`, "\t", `\t`).Replace(tc.role) + "\"]\n"
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, append([]string{"TOKEND_BOOTSTRAP=" + path, "CAROL_PASSWORD=correct-horse-battery", "HTTP_ADDR=127.0.0.1:0"}, env...), "", "serve"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bootstrap roles [%q]: %v %s; want an error with %q", tc.role, err, out, tc.want)
		}
		if _, err := st.UserByName(ctx, "carol"); err == nil {
			t.Fatalf("bootstrap with role %q created the user", tc.role)
		}
	}
	if out, err := run(t, env, "correct-horse-battery\n", "users", "create", "bob", "--role", "a", "--role", "a"); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("users create --role a --role a: %v %s", err, out)
	}
	if u, err := st.UserByName(ctx, "alice"); err != nil || !slices.Equal(u.Roles, []string{"ops"}) {
		t.Fatalf("alice after refused changes: %+v, %v", u, err)
	}
}
