// Package testkit holds what the tests of the verify module's packages
// share.
package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"maps"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Edit returns a copy of m with the pairs of kv (key, value, key, value,
// ...) applied: each key set to its value, or deleted when the value is
// nil. m itself is not changed.
func Edit(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// Key is a signing key for one of the module's algorithms, and the
// golang-jwt method that signs with it.
type Key struct {
	Alg    string // ES256, EdDSA or RS256
	Signer crypto.Signer
	Method jwt.SigningMethod
}

// NewKey makes a key for alg: ES256, EdDSA or RS256 (2048 bits).
func NewKey(t testing.TB, alg string) *Key {
	t.Helper()
	k := &Key{Alg: alg}
	var err error
	switch alg {
	case "ES256":
		k.Signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.Method = jwt.SigningMethodES256
	case "EdDSA":
		_, k.Signer, err = ed25519.GenerateKey(rand.Reader)
		k.Method = jwt.SigningMethodEdDSA
	case "RS256":
		k.Signer, err = rsa.GenerateKey(rand.Reader, 2048)
		k.Method = jwt.SigningMethodRS256
	default:
		t.Fatalf("testkit: no keys for %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}
