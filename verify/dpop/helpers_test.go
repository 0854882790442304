package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify/internal/testkit"
)

var b64 = base64.RawURLEncoding.EncodeToString

// testKey is a proof key and its public JWK members.
type testKey struct {
	alg    string
	signer crypto.Signer
	method jwt.SigningMethod
}

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
	k := &testKey{alg: alg}
	var err error
	switch alg {
	case "ES256":
		k.signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.method = jwt.SigningMethodES256
	case "EdDSA":
		_, k.signer, err = ed25519.GenerateKey(rand.Reader)
		k.method = jwt.SigningMethodEdDSA
	case "RS256":
		k.signer, err = rsa.GenerateKey(rand.Reader, 2048)
		k.method = jwt.SigningMethodRS256
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	keys[alg+name] = k
	return k
}

// jwk is the public JWK of k as a map, to be altered by tests.
func (k *testKey) jwk() map[string]any {
	switch p := k.signer.Public().(type) {
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
	return map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.jwk()}
}

// sign signs header and claims (JSON values or raw JSON text) as given.
func (k *testKey) sign(t testing.TB, header, claims any) string {
	t.Helper()
	signing := b64(toJSON(header)) + "." + b64(toJSON(claims))
	sig, err := k.method.Sign(signing, k.signer)
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
