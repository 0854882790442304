package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"

	"github.com/tokend/tokend/verify/internal/jose"
)

// parseKey reads the public key of a proof's jwk header for alg.
func parseKey(r *jose.ObjectReader, alg string) (*jose.PublicKey, error) {
	var j jose.JWK
	var err error
	for r.Next() {
		switch string(r.Name) {
		case "kty":
			err = jose.String(r.Value, &j.Kty)
		case "crv":
			err = jose.String(r.Value, &j.Crv)
		case "x":
			err = jose.String(r.Value, &j.X)
		case "y":
			err = jose.String(r.Value, &j.Y)
		case "n":
			err = jose.String(r.Value, &j.N)
		case "e":
			err = jose.String(r.Value, &j.E)
		case "alg":
			err = jose.String(r.Value, &j.Alg)
		case "use":
			err = jose.String(r.Value, &j.Use)
		case "d", "p", "q", "dp", "dq", "qi", "oth", "k":
			// RFC 7517 §4, RFC 7518 §6: private (or symmetric) key
			// material, which a proof must never carry (RFC 9449 §4.2).
			return nil, invalid("the DPoP proof's jwk holds private key material")
		}
		if err != nil {
			return nil, invalid("the DPoP proof's jwk has a member of the wrong type")
		}
	}
	if r.Err != nil {
		return nil, invalid("the DPoP proof's jwk is malformed")
	}
	k, err := jose.ParseJWK(j)
	if err != nil {
		return nil, invalid("the DPoP proof's jwk is not a valid public key")
	}
	if !k.Accepts(alg) {
		return nil, invalid("the DPoP proof's jwk does not fit its algorithm")
	}
	if p, ok := k.Pub.(*rsa.PublicKey); ok && p.N.BitLen() > maxRSABits {
		return nil, invalid("the DPoP proof's RSA key is too large")
	}
	return k, nil
}

// Thumbprint is the RFC 7638 JWK SHA-256 thumbprint of pub, base64url: what
// a token bound to pub carries as cnf.jkt (RFC 9449 §6). pub is an
// *ecdsa.PublicKey on P-256, an ed25519.PublicKey or an *rsa.PublicKey.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := appendJWK(nil, pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(j)
	return b64(sum[:]), nil
}

// appendJWK appends the public JWK of pub with exactly the members RFC
// 7638 §3.2 hashes, in its order and without whitespace: both the input of
// the thumbprint and the jwk a proof carries.
func appendJWK(dst []byte, pub crypto.PublicKey) ([]byte, error) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p == nil || p.Curve != elliptic.P256() {
			return nil, errors.New("dpop: an ECDSA key must be on P-256")
		}
		dst = append(dst, `{"crv":"P-256","kty":"EC","x":"`...)
		dst = appendB64(dst, p.X.FillBytes(make([]byte, 32)))
		dst = append(dst, `","y":"`...)
		dst = appendB64(dst, p.Y.FillBytes(make([]byte, 32)))
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, errors.New("dpop: bad Ed25519 public key")
		}
		dst = append(dst, `{"crv":"Ed25519","kty":"OKP","x":"`...)
		dst = appendB64(dst, p)
	case *rsa.PublicKey:
		if p == nil || p.N == nil || p.E <= 0 {
			return nil, errors.New("dpop: bad RSA public key")
		}
		dst = append(dst, `{"e":"`...)
		dst = appendB64(dst, big.NewInt(int64(p.E)).Bytes())
		dst = append(dst, `","kty":"RSA","n":"`...)
		dst = appendB64(dst, p.N.Bytes())
	default:
		return nil, errors.New("dpop: unsupported key type (want ECDSA P-256, Ed25519 or RSA)")
	}
	return append(dst, `"}`...), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func appendB64(dst, b []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, base64.RawURLEncoding.EncodedLen(len(b)))...)
	base64.RawURLEncoding.Encode(dst[n:], b)
	return dst
}
