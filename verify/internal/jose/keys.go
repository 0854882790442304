package jose

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// The signature algorithms the module verifies. Never "none", never HMAC:
// a public key must never serve as an HMAC secret.
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
)

// Algorithms lists the algorithms, in the order of AlgIndex.
var Algorithms = [...]string{ES256, EdDSA, RS256}

// methods holds the signature check of each algorithm, indexed like
// Algorithms.
var methods = [len(Algorithms)]jwt.SigningMethod{
	jwt.SigningMethodES256,
	jwt.SigningMethodEdDSA,
	jwt.SigningMethodRS256,
}

// AlgIndex is alg's index in Algorithms, -1 for any other name.
func AlgIndex(alg string) int {
	switch alg {
	case ES256:
		return 0
	case EdDSA:
		return 1
	case RS256:
		return 2
	}
	return -1
}

// MinRSABits is the smallest RSA modulus accepted (as tokend's own keys).
const MinRSABits = 2048

// PublicKey is a key a signature may be checked with.
type PublicKey struct {
	Alg string // the key's alg; "" if its JWK has none
	Pub any    // *ecdsa.PublicKey (P-256), ed25519.PublicKey or *rsa.PublicKey
}

// Accepts reports whether a JWS with header alg may be checked with k: alg
// must be the key's own alg when it has one, and fit its type.
func (k *PublicKey) Accepts(alg string) bool {
	if k.Alg != "" && k.Alg != alg {
		return false
	}
	switch p := k.Pub.(type) {
	case *ecdsa.PublicKey:
		return alg == ES256 && p != nil && p.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == EdDSA && len(p) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return alg == RS256 && p != nil && p.N != nil && p.N.BitLen() >= MinRSABits
	}
	return false
}

// Verify checks sig, the signature of the JWS signing input signing, made
// with alg (which k must accept) by k.
func (k *PublicKey) Verify(alg, signing string, sig []byte) error {
	i := AlgIndex(alg)
	if i < 0 || !k.Accepts(alg) {
		return fmt.Errorf("algorithm %q does not fit the key", alg)
	}
	return methods[i].Verify(signing, sig, k.Pub)
}

// JWK holds the members of a public JWK (RFC 7517) that ParseJWK reads.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// ParseJWK returns the signature key j describes: an EC key on P-256 whose
// point is on the curve (RFC 7518 §6.2.1: coordinates of the curve's full
// length), an Ed25519 OKP key (RFC 8037), or an RSA key of at least
// MinRSABits with an odd exponent ≥ 3. Each member is strict base64url,
// and big-endian integers have no leading zero byte, so that every key
// has one spelling (and one RFC 7638 thumbprint).
func ParseJWK(j JWK) (*PublicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q", j.Use)
	}
	if j.Alg != "" && AlgIndex(j.Alg) < 0 {
		return nil, fmt.Errorf("unsupported alg %q", j.Alg)
	}
	k := &PublicKey{Alg: j.Alg}
	switch j.Kty {
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, errX := Segment(nil, j.X)
		y, errY := Segment(nil, j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 coordinates")
		}
		// crypto/ecdh checks that the point is on the curve.
		if _, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
			return nil, err
		}
		k.Pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, err := Segment(nil, j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		k.Pub = ed25519.PublicKey(x)
	case "RSA":
		n, errN := Segment(nil, j.N)
		e, errE := Segment(nil, j.E)
		if errN != nil || errE != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || e[0] == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA key")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small", pub.N.BitLen())
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		k.Pub = pub
	default:
		return nil, fmt.Errorf("unsupported kty %q", j.Kty)
	}
	if j.Alg != "" && !k.Accepts(j.Alg) {
		return nil, fmt.Errorf("alg %s does not fit kty %s", j.Alg, j.Kty)
	}
	return k, nil
}
