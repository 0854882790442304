package dpop_test

import (
	"testing"

	"github.com/tokend/tokend/verify/dpop"
)

// BenchmarkCheck is the cost of checking one proof (of a resource
// request, with ath), signature included: what a DPoP request adds.
func BenchmarkCheck(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			k := key(b, alg, "bench")
			proof, err := dpop.NewProof(k.Signer, "GET", testURL, testToken, "", testNow)
			if err != nil {
				b.Fatal(err)
			}
			p := params()
			p.AccessToken = testToken
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := dpop.Check(proof, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
