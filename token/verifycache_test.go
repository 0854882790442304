package token

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/verify"
)

// swapKeys is a KeySource whose set a test can replace.
type swapKeys struct{ set atomic.Pointer[keys.Set] }

func (s *swapKeys) Keys() *keys.Set { return s.set.Load() }

func TestVerifyCache(t *testing.T) {
	k1, err := keys.Generate(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := keys.Generate(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	both, err := keys.NewSet(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	src := &swapKeys{}
	src.set.Store(both)
	iss := NewIssuer("https://tokend.test", []string{"api"}, time.Minute, src)
	c := NewVerifyCache(iss, 2)
	now := time.Now()
	tok, err := iss.Issue(Claims{Subject: "u", ClientID: "c", SessionID: "s", Scope: "read"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // miss, then hits
		cl, err := c.Verify(tok, now)
		if err != nil || cl.Subject != "u" || cl.KeyID != k1.ID {
			t.Fatalf("verify %d: %+v %v", i, cl, err)
		}
	}
	// A tampered token is never served from the cache.
	if _, err := c.Verify(tok[:len(tok)-2]+"AA", now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tampered token: %v", err)
	}
	// Expiry is checked on a hit.
	if _, err := c.Verify(tok, now.Add(time.Minute+AccessLeeway)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token from the cache: %v", err)
	}
	// Dropping the signing key from the published set invalidates at once.
	only2, err := keys.NewSet(k2)
	if err != nil {
		t.Fatal(err)
	}
	src.set.Store(only2)
	if _, err := c.Verify(tok, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token of a dropped key from the cache: %v", err)
	}
	// Bounded: two generations of at most max entries.
	for i := 0; i < 10; i++ {
		tk, err := iss.Issue(Claims{Subject: "u", ClientID: "c"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(tk, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.cur) + len(c.old); n > 4 {
		t.Fatalf("cache holds %d entries, want at most 2×max = 4", n)
	}
}

func BenchmarkVerifyCachedES256(b *testing.B) {
	set, err := keys.Ephemeral(verify.ES256)
	if err != nil {
		b.Fatal(err)
	}
	iss := NewIssuer("https://tokend.test", nil, time.Minute, StaticKeys{Set: set})
	c := NewVerifyCache(iss, 0)
	now := time.Now()
	tok, _ := iss.Issue(Claims{Subject: "u", ClientID: "c", SessionID: "s"}, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
