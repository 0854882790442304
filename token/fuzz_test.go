package token

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

// FuzzParseRefresh: ParseRefresh never panics, refuses with ErrMalformed,
// and what it accepts round-trips: the token is exactly
// rt_<user>_<session>_<secret> with valid ids and Hash = SHA-256(secret).
func FuzzParseRefresh(f *testing.F) {
	tok, _ := NewRefresh(NewID(), NewID())
	f.Add(tok)
	f.Add("")
	f.Add("rt_")
	f.Add(strings.Repeat("a", RefreshLen))
	f.Add("rt_" + strings.Repeat("a", 26) + "_" + strings.Repeat("b", 26) + "_" + strings.Repeat("-", 43))
	f.Add(strings.Replace(tok, "_", "-", 1))
	f.Add(tok[:len(tok)-1] + "=")
	f.Add(tok + "x")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRefresh(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if len(s) != RefreshLen || !ValidID(r.UserID) || !ValidID(r.SessionID) {
			t.Fatalf("accepted %q as %+v", s, r)
		}
		secret := s[len(s)-secretLen:]
		if "rt_"+r.UserID+"_"+r.SessionID+"_"+secret != s {
			t.Fatalf("%q does not round-trip: %+v", s, r)
		}
		if r.Hash != sha256.Sum256([]byte(secret)) {
			t.Fatalf("%q: hash is not SHA-256 of the secret", s)
		}
		// A new token for the same session parses back to it.
		next, parsed := NewRefresh(r.UserID, r.SessionID)
		if again, err := ParseRefresh(next); err != nil || again != parsed {
			t.Fatalf("NewRefresh(%s, %s) = %q does not parse back: %v", r.UserID, r.SessionID, next, err)
		}
	})
}
