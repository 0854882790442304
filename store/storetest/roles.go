package storetest

import (
	"slices"
	"testing"

	"github.com/tokend/tokend/store"
)

// testInvalidRoles: a role credential.Roles refuses is refused by
// CreateUser and UpdateUser, and nothing is written. "ops\radmin" kept
// space-joined would read back as two roles, ops and admin.
func testInvalidRoles(t *testing.T, e *env) {
	u := e.user("alice", "ops")
	for _, roles := range [][]string{
		{"ops\radmin"}, {"ops\u00a0admin"}, {"ops\tadmin"}, {"ops admin"}, {""}, {"ops", "ops"},
	} {
		bad := store.User{ID: newID(), Username: "mallory", PasswordHash: "x", Roles: roles, CreatedAt: e.now}
		if err := e.st.CreateUser(e.ctx, bad); err == nil {
			t.Fatalf("CreateUser with roles %q succeeded", roles)
		}
		_, err := e.st.UserByName(e.ctx, "mallory")
		wantErr(t, "user created with invalid roles", err, store.ErrNotFound)

		upd := u
		upd.PasswordHash, upd.Roles, upd.UpdatedAt = "$argon2id$changed", roles, e.now
		if err := e.st.UpdateUser(e.ctx, upd); err == nil {
			t.Fatalf("UpdateUser with roles %q succeeded", roles)
		}
		got, err := e.st.User(e.ctx, u.ID)
		must(t, err)
		if !slices.Equal(got.Roles, []string{"ops"}) || got.PasswordHash != u.PasswordHash {
			t.Fatalf("after a refused UpdateUser with roles %q: roles %q, hash %q", roles, got.Roles, got.PasswordHash)
		}
	}
}
