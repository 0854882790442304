package credential

import "fmt"

// MaxRoleBytes bounds a role.
const MaxRoleBytes = 64

// Role reports what is wrong with a role, or nil. A role is 1 to
// MaxRoleBytes bytes of A-Z a-z 0-9 . _ : - — no space of any kind (stores
// keep a user's roles space-joined, and split them on any Unicode space),
// no control character, nothing outside ASCII — so the role an operator
// grants is the role every access token carries.
func Role(r string) error {
	if r == "" || len(r) > MaxRoleBytes {
		return fmt.Errorf("role %q: a role is 1 to %d characters", r, MaxRoleBytes)
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("role %q: a role may contain only letters A-Z and a-z, digits and . _ : -", r)
		}
	}
	return nil
}

// Roles reports what is wrong with a user's list of roles, or nil: each
// must be a Role, and none may be listed twice.
func Roles(roles []string) error {
	for i, r := range roles {
		if err := Role(r); err != nil {
			return err
		}
		for _, prev := range roles[:i] {
			if prev == r {
				return fmt.Errorf("role %q is listed twice", r)
			}
		}
	}
	return nil
}
