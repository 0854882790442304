package verify_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/verify"
)

// FuzzVerify: Verify never panics, every refusal is ErrInvalid or
// ErrExpired, and the only strings it accepts are the genuine tokens the
// seeds were signed as (a mutation of one — another encoding of the same
// bytes included — never verifies).
func FuzzVerify(f *testing.F) {
	fi := newFakeIssuer(f, keys.ES256, "orders")
	v := newVerifier(f, fi, verify.WithAudience("orders"))
	tok := fi.mint(f, defaultClaims)
	k := fi.set.Load().Signing()
	parts := strings.Split(tok, ".")
	f.Add(tok)
	f.Add(forge(f, k, with(fi.goodHeader(k), "alg", "none"), fi.goodClaims()))
	f.Add(forge(f, k, with(fi.goodHeader(k), "typ", "JWT"), fi.goodClaims()))
	f.Add(forge(f, k, with(fi.goodHeader(k), "kid", "../../etc/passwd"), fi.goodClaims()))
	audString := forge(f, k, fi.goodHeader(k), with(fi.goodClaims(), "aud", "orders")) // aud as a lone string: valid
	genuine := map[string]bool{tok: true, audString: true}
	f.Add(audString)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "=")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("rt_" + strings.Repeat("a", 97))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := v.Verify(context.Background(), s)
		if err == nil {
			if !genuine[s] {
				t.Fatalf("accepted %q as %+v", s, c)
			}
			return
		}
		if !errors.Is(err, verify.ErrInvalid) && !errors.Is(err, verify.ErrExpired) {
			t.Fatalf("%q: error %v is neither ErrInvalid nor ErrExpired", s, err)
		}
	})
}
