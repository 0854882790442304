package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
	"github.com/tokend/tokend/verify/dpop"
)

// Local verification (docs/design.md, "Access tokens" and "The
// verified-token cache"): BenchmarkVerify runs Verifier.Verify on a token
// it has seen before (warm key and token caches) and BenchmarkBareGolangJWT
// a bare golang-jwt parse of the same token with the same key and the claim
// checks golang-jwt can do (alg, iss, aud, exp, iat, nbf, leeway). Compare
// with
//
//	go test -run '^$' -bench 'Verify|Bare' -benchmem ./verify

var benchAlgs = []string{verify.ES256, verify.EdDSA, verify.RS256}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, alg, "orders")
			v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
			if err != nil {
				b.Fatal(err)
			}
			tok := f.mint(b, defaultClaims)
			ctx := context.Background()
			if _, err := v.Verify(ctx, tok); err != nil { // warm the key cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bareClaims is what a golang-jwt user would decode tokend's payload into.
type bareClaims struct {
	jwt.RegisteredClaims
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Roles    []string `json:"roles"`
	Sid      string   `json:"sid"`
}

func BenchmarkBareGolangJWT(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, alg, "orders")
			tok := f.mint(b, defaultClaims)
			p, keyFunc := bareParser(f, alg)
			var c bareClaims
			if _, err := p.ParseWithClaims(tok, &c, keyFunc); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var c bareClaims
				if _, err := p.ParseWithClaims(tok, &c, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyVsBare alternates the two, call by call, on tokens the
// Verifier has not seen (first sight: the signature is checked and the
// token cached), and reports verify's time over golang-jwt's as "ratio"
// (the budget is 1.0): on a busy machine, where the separate benchmarks'
// times drift by tens of per cent from run to run, the alternation gives
// both the same conditions.
//
//	go test -run '^$' -bench VerifyVsBare -count 6 ./verify
func BenchmarkVerifyVsBare(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, alg, "orders")
			// A small cache and more tokens than it holds: each comes
			// back after it was dropped, so every Verify is a first sight.
			v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now), verify.WithTokenCache(64))
			if err != nil {
				b.Fatal(err)
			}
			toks := make([]string, 1024)
			for i := range toks {
				c := defaultClaims
				c.SessionID = fmt.Sprint("sess-", i)
				toks[i] = f.mint(b, c)
			}
			ctx := context.Background()
			p, keyFunc := bareParser(f, alg)
			if _, err := v.Verify(ctx, toks[len(toks)-1]); err != nil {
				b.Fatal(err)
			}
			tVerify, tBare := alternate(b, v, p, keyFunc, func(i int) string { return toks[i%len(toks)] })
			b.ReportMetric(float64(tVerify)/float64(tBare), "ratio")
		})
	}
}

// BenchmarkCachedVsBare alternates Verify of a token it has seen before
// (the verified-token cache) and a bare golang-jwt check of it, and
// reports golang-jwt's time over verify's as "speedup" (the target is at
// least 40) and verify's own time per call as "cached-ns/op" (at most
// 2,000).
//
//	go test -run '^$' -bench CachedVsBare -count 6 ./verify
func BenchmarkCachedVsBare(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, alg, "orders")
			v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
			if err != nil {
				b.Fatal(err)
			}
			tok := f.mint(b, defaultClaims)
			ctx := context.Background()
			p, keyFunc := bareParser(f, alg)
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			tVerify, tBare := alternate(b, v, p, keyFunc, func(int) string { return tok })
			b.ReportMetric(float64(tBare)/float64(tVerify), "speedup")
			b.ReportMetric(float64(tVerify)/float64(b.N), "cached-ns/op")
		})
	}
}

// alternate runs Verify and the bare check of golang-jwt call by call on
// the tokens tok gives, and returns the time each took in all.
func alternate(b *testing.B, v *verify.Verifier, p *jwt.Parser, keyFunc jwt.Keyfunc, tok func(i int) string) (tVerify, tBare time.Duration) {
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := tok(i)
		t0 := time.Now()
		if _, err := v.Verify(ctx, t); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var c bareClaims
		if _, err := p.ParseWithClaims(t, &c, keyFunc); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		tVerify += t1.Sub(t0)
		tBare += t2.Sub(t1)
	}
	return tVerify, tBare
}

// bareParser is what a golang-jwt user would write for tokend's tokens:
// alg, iss, aud, exp, iat and nbf with verify's leeway, the key known.
func bareParser(f *fakeIssuer, alg string) (*jwt.Parser, jwt.Keyfunc) {
	pub := f.set.Load().Signing().Public
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(f.url), jwt.WithAudience("orders"),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(verify.DefaultLeeway),
		jwt.WithTimeFunc(f.clock.Now),
	)
	return p, func(*jwt.Token) (any, error) { return pub, nil }
}

// BenchmarkVerifyRequestDPoP is what a resource server spends on a
// request with a DPoP-bound token it has seen before: the token from the
// cache, and a new proof checked in full (signature included) and
// recorded in the replay cache. The proofs are made before the timer
// starts.
func BenchmarkVerifyRequestDPoP(b *testing.B) {
	for _, alg := range []string{verify.ES256, verify.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, verify.ES256, "orders")
			var key crypto.Signer
			var err error
			if alg == verify.ES256 {
				key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			} else {
				_, key, err = ed25519.GenerateKey(rand.Reader)
			}
			if err != nil {
				b.Fatal(err)
			}
			jkt, _ := dpop.Thumbprint(key.Public())
			c := defaultClaims
			c.JKT = jkt
			tok := f.mint(b, c)
			v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now),
				verify.WithDPoP(verify.DPoP{PublicURL: "https://api.example.com", Replay: dpop.NewMemoryReplayCache(b.N + 1)}))
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*http.Request, b.N+1)
			for i := range reqs {
				proof, err := dpop.NewProof(key, "GET", "https://api.example.com/orders", tok, "", f.clock.Now())
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = httptest.NewRequest("GET", "/orders", nil)
				reqs[i].Header.Set("Authorization", "DPoP "+tok)
				reqs[i].Header.Set("DPoP", proof)
			}
			if _, err := v.VerifyRequest(reqs[b.N]); err != nil { // the token is seen once
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.VerifyRequest(reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Verification from many goroutines shares the key and token caches
// without contention.
func BenchmarkVerifyParallel(b *testing.B) {
	f := newFakeIssuer(b, verify.ES256, "orders")
	v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
	if err != nil {
		b.Fatal(err)
	}
	tok := f.mint(b, defaultClaims)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
