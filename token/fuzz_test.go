package token

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokend/tokend/keys"
)

// FuzzParseRefresh: Verify and ParseRefresh never panic and refuse with
// ErrMalformed or ErrNotGenuine; what ParseRefresh accepts has exactly one
// spelling (it re-encodes to the same ids, generation and kid), and what
// Verify accepts is exactly the token Derive makes for it — so no second
// encoding of a genuine token and no forgery is ever accepted.
func FuzzParseRefresh(f *testing.F) {
	r := NewRefresher(StaticRefreshKeys{Set: keys.EphemeralRefresh()})
	tok, rt, err := r.Mint(NewID(), NewID(), 0)
	if err != nil {
		f.Fatal(err)
	}
	later, _ := r.Derive(rt, 18446744073709551615)
	f.Add(tok)
	f.Add(later)
	f.Add("")
	f.Add("rt_")
	f.Add(strings.Repeat("a", MinRefreshLen))
	f.Add(strings.Replace(tok, "_0_", "_00_", 1))
	f.Add(strings.Replace(tok, "_0_", "_-0_", 1))
	f.Add(strings.Replace(later, "18446744073709551615", "18446744073709551616", 1))
	f.Add(strings.Replace(tok, "_", "-", 1))
	f.Add(tok[:len(tok)-1] + "=")
	f.Add(tok + "x")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	f.Fuzz(func(t *testing.T, s string) {
		p, perr := ParseRefresh(s)
		v, verr := r.Verify(s)
		if perr != nil {
			if !errors.Is(perr, ErrMalformed) || !errors.Is(verr, ErrMalformed) {
				t.Fatalf("%q: parse %v, verify %v", s, perr, verr)
			}
			return
		}
		if !ValidID(p.UserID) || !ValidID(p.SessionID) || len(s) < MinRefreshLen || len(s) > MaxRefreshLen {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		if !strings.HasPrefix(s, "rt_"+p.UserID+"_"+p.SessionID+"_") || !strings.HasSuffix(s[:len(s)-macLen-1], "_"+p.KeyID) {
			t.Fatalf("%q does not spell %+v", s, p)
		}
		if verr != nil {
			if !errors.Is(verr, ErrNotGenuine) {
				t.Fatalf("%q: verify %v", s, verr)
			}
			return
		}
		if v != p {
			t.Fatalf("%q: verify %+v, parse %+v", s, v, p)
		}
		if again, err := r.Derive(v, v.Generation); err != nil || again != s {
			t.Fatalf("%q verified but Derive gives %q (%v)", s, again, err)
		}
	})
}
