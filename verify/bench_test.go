package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
)

// Local verification stays within 1.2× of a bare signature check
// (docs/design.md, "Access tokens").
// BenchmarkVerify runs the full Verifier.Verify (warm key cache) and
// BenchmarkBareGolangJWT a bare golang-jwt parse of the same token with the
// same key and the claim checks golang-jwt can do (alg, iss, aud, exp, iat,
// nbf, leeway). Compare with
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
			pub := f.set.Load().Signing().Public
			p := jwt.NewParser(
				jwt.WithValidMethods([]string{alg}),
				jwt.WithIssuer(f.url),
				jwt.WithAudience("orders"),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithLeeway(verify.DefaultLeeway),
				jwt.WithTimeFunc(f.clock.Now),
			)
			keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
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

// BenchmarkVerifyVsBare alternates the two, call by call, and reports
// verify's time over golang-jwt's as "ratio" (the budget is 1.2): on a
// busy machine, where the separate benchmarks' times drift by tens of per
// cent from run to run, the alternation gives both the same conditions.
//
//	go test -run '^$' -bench VerifyVsBare -count 6 ./verify
func BenchmarkVerifyVsBare(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			f := newFakeIssuer(b, alg, "orders")
			v, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithClock(f.clock.Now))
			if err != nil {
				b.Fatal(err)
			}
			tok := f.mint(b, defaultClaims)
			ctx := context.Background()
			pub := f.set.Load().Signing().Public
			p := jwt.NewParser(
				jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(f.url), jwt.WithAudience("orders"),
				jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(verify.DefaultLeeway),
				jwt.WithTimeFunc(f.clock.Now),
			)
			keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			var tVerify, tBare time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				var c bareClaims
				if _, err := p.ParseWithClaims(tok, &c, keyFunc); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				tVerify += t1.Sub(t0)
				tBare += t2.Sub(t1)
			}
			b.ReportMetric(float64(tVerify)/float64(tBare), "ratio")
		})
	}
}

// Verification from many goroutines shares the key cache without contention.
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
