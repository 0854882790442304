package dpop_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"sync"
	"testing"

	"github.com/tokend/tokend/verify/internal/testkit"
)

var b64 = base64.RawURLEncoding.EncodeToString

// testKey is a proof key.
type testKey struct{ *testkit.Key }

var (
	keysMu sync.Mutex
	keys   = map[string]*testKey{}
)

// key returns a key for alg, made once per name (RSA keys are slow).
func key(t testing.TB, alg, name string) *testKey {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[alg+name]; ok {
		return k
	}
	k := &testKey{testkit.NewKey(t, alg)}
	keys[alg+name] = k
	return k
}

// jwk is the public JWK of k as a map, to be altered by tests.
func (k *testKey) jwk() map[string]any {
	switch p := k.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		return map[string]any{"kty": "EC", "crv": "P-256", "x": b64(p.X.FillBytes(make([]byte, 32))), "y": b64(p.Y.FillBytes(make([]byte, 32)))}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(p)}
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}
	}
	panic("unreachable")
}

// header is a good proof header for k.
func (k *testKey) header() map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": k.Alg, "jwk": k.jwk()}
}

// sign signs header and claims (JSON values or raw JSON text) as given.
func (k *testKey) sign(t testing.TB, header, claims any) string {
	t.Helper()
	signing := b64(toJSON(header)) + "." + b64(toJSON(claims))
	sig, err := k.Method.Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

func toJSON(v any) []byte {
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// with edits a copy of a token's header or claims.
var with = testkit.Edit
