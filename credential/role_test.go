package credential

import (
	"strings"
	"testing"
)

func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		roles []string
		ok    bool
	}{
		{nil, true},
		{[]string{"admin"}, true},
		{[]string{"admin", "ops"}, true},
		{[]string{"orders:read", "team.payments", "on_call", "v-2", "ADMIN"}, true},
		{[]string{strings.Repeat("r", MaxRoleBytes)}, true},
		{[]string{"admin", "Admin"}, true}, // roles are compared exactly, as verify does

		{[]string{""}, false},
		{[]string{strings.Repeat("r", MaxRoleBytes+1)}, false},
		{[]string{"ops\radmin"}, false}, // a store would read back ops and admin
		{[]string{"ops\u00a0admin"}, false},
		{[]string{"ops\tadmin"}, false},
		{[]string{"ops admin"}, false},
		{[]string{"ops\nadmin"}, false},
		{[]string{"ops\u2028admin"}, false},
		{[]string{"ops\u3000admin"}, false},
		{[]string{"admin\x00"}, false},
		{[]string{"admin\x7f"}, false},
		{[]string{"\u0430dmin"}, false}, // Cyrillic а
		{[]string{"ad\u200bmin"}, false},
		{[]string{"admin\xff"}, false},
		{[]string{"a/b"}, false},
		{[]string{"a,b"}, false}, // the CLI prints roles comma-joined
		{[]string{"admin", "admin"}, false},
		{[]string{"admin", "ops", "admin"}, false},
		{[]string{"ops", ""}, false},
	} {
		err := Roles(tc.roles)
		if (err == nil) != tc.ok {
			t.Errorf("Roles(%q) = %v, want ok %v", tc.roles, err, tc.ok)
		}
		if len(tc.roles) == 1 && (Role(tc.roles[0]) == nil) != tc.ok {
			t.Errorf("Role(%q) = %v, want ok %v", tc.roles[0], Role(tc.roles[0]), tc.ok)
		}
	}
}

// Every role Role accepts survives the stores' space-joined form: split
// on any Unicode space (strings.Fields), it comes back as itself.
func FuzzRoleSurvivesStorage(f *testing.F) {
	for _, s := range []string{"admin", "ops\radmin", "ops\u00a0admin", "a:b.c_d-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, r string) {
		if Role(r) != nil {
			return
		}
		if got := strings.Fields("x " + r + " y"); len(got) != 3 || got[1] != r {
			t.Fatalf("role %q stored space-joined reads back as %q", r, got)
		}
	})
}
