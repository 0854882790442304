package verify_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/verify"
)

// A token seen before skips its signature, never the checks that can
// change: its times, the revocation feed (TestRevocationFeed revokes
// tokens verified before), and its key's presence in the JWKS.
func TestTokenCacheRechecksEveryUse(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.ES256)
	v := newVerifier(t, f)
	tok := f.mint(t, defaultClaims)
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := verify.CacheLen(v); n != 1 {
		t.Fatalf("%d cached", n)
	}
	// Another clock: issued in the future, then expired.
	now := f.clock.Now()
	if _, err := v.VerifyAt(ctx, tok, now.Add(-time.Hour)); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("before iat: %v", err)
	}
	if _, err := v.VerifyAt(ctx, tok, now.Add(time.Hour)); !errors.Is(err, verify.ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}
	// The same bytes only: one character changed is another token.
	if _, err := v.Verify(ctx, tok[:len(tok)-2]+"AA"); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("altered: %v", err)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}

	// Its key leaves the JWKS: the token is refused, and forgotten.
	old := f.set.Load()
	next, _ := newKeySet(generateKey(t, verify.ES256))
	f.set.Store(next)
	f.clock.Advance(301 * time.Second) // past the JWKS's max-age
	fresh := f.mint(t, defaultClaims)
	if _, err := v.Verify(ctx, fresh); err != nil { // refetches the JWKS
		t.Fatal(err)
	}
	if n := verify.CacheLen(v); n != 1 {
		t.Fatalf("%d cached after the key left; want the new token only", n)
	}
	if _, err := v.VerifyAt(ctx, tok, now); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("a token of a key no longer published: %v", err)
	}

	// A key published again under its kid with other key material: the
	// token is checked anew, and refused.
	f.set.Store(old)
	v = newVerifier(t, f)
	tok = f.mint(t, defaultClaims)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	impostor := generateKey(t, verify.ES256)
	impostor.ID = old.Signing().ID
	swapped, _ := newKeySet(impostor)
	f.set.Store(swapped)
	f.clock.Advance(301 * time.Second)
	if _, err := v.VerifyAt(ctx, tok, f.clock.Now().Add(-301*time.Second)); !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("a token whose kid names other key material now: %v", err)
	}
}

// The cache holds at most its size; WithTokenCache(0) turns it off.
func TestTokenCacheBounded(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.EdDSA)
	v := newVerifier(t, f, verify.WithTokenCache(40))
	for i := 0; i < 200; i++ {
		c := defaultClaims
		c.Subject = fmt.Sprint("user-", i)
		if _, err := v.Verify(ctx, f.mint(t, c)); err != nil {
			t.Fatal(err)
		}
		if n := verify.CacheLen(v); n > 40 {
			t.Fatalf("%d cached, over 40", n)
		}
	}
	off := newVerifier(t, f, verify.WithTokenCache(0))
	if _, err := off.Verify(ctx, f.mint(t, defaultClaims)); err != nil {
		t.Fatal(err)
	}
}

// What an entry costs, for the docs: measured with tokens laid out as
// tokend writes them.
func TestTokenCacheBytesPerEntry(t *testing.T) {
	const n = 2000
	ctx := context.Background()
	f := newFakeIssuer(t, verify.EdDSA)
	toks := make([]string, n)
	for i := range toks {
		c := defaultClaims
		c.Subject = fmt.Sprint("4f1c2b7e-9d3a-4c55-8e21-", 100000000000+i) // a UUID, as tokend's user ids
		c.SessionID = fmt.Sprint("s", 1000000+i)
		toks[i] = f.mint(t, c)
	}
	v := newVerifier(t, f, verify.WithTokenCache(2*n))
	if _, err := v.Verify(ctx, toks[0]); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tok := range toks[1:] {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / (n - 1)
	t.Logf("%d-byte tokens: %.0f bytes per cached token", len(toks[0]), per)
	if over := per - float64(len(toks[0])); over > 800 {
		t.Errorf("%.0f bytes per entry beside the token; docs/design.md says at most 800", over)
	}
	runtime.KeepAlive(v)
}

// Many goroutines verifying many tokens, through the cache, while the
// keys rotate.
func TestTokenCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, verify.EdDSA)
	cc := "max-age=60"
	f.cacheControl.Store(&cc)
	v := newVerifier(t, f, verify.WithTokenCache(64))
	toks := make([]string, 100)
	for i := range toks {
		c := defaultClaims
		c.SessionID = fmt.Sprint("s", i)
		toks[i] = f.mint(t, c)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if _, err := v.Verify(ctx, toks[(g*31+i)%len(toks)]); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	// Meanwhile the JWKS expires and is fetched again, each time with
	// another extra key: the previous one leaves, and its (no) tokens
	// are dropped while the others verify.
	wg.Add(1)
	go func() {
		defer wg.Done()
		signing := f.set.Load().Signing()
		for i := 0; i < 5; i++ {
			set, _ := newKeySet(signing, generateKey(t, verify.EdDSA))
			f.set.Store(set)
			f.clock.Advance(61 * time.Second)
			if _, err := v.Verify(ctx, toks[0]); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if n := verify.CacheLen(v); n > 64 {
		t.Fatalf("%d cached", n)
	}
	if n := f.fetches.Load(); n < 5 {
		t.Fatalf("%d JWKS fetches", n)
	}
}
