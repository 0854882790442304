// Package keys holds tokend's key material: the JWT signing keys and the
// refresh keys refresh tokens are derived from. Both kinds live as files
// in one key directory shared by every replica, one file per key, and
// follow one life — pending, active, retired, expired — on a schedule
// derived from their file names and the clock (Schedule).
//
// Each kind is a Kind (kind.go) described once, beside its key type and
// its set of keys in use — Signing (this file: PEM private keys, their
// RFC 7638 thumbprints as kid, Set with the RFC 7517 JWKS) and Refresh
// (refresh.go: 32-byte HMAC secrets, RefreshSet) — and everything else is
// written once for both: file names, loading, status, pruning and adding
// keys (dir.go), the schedule (schedule.go), the immutable Ring of keys in
// use that both sets are (set.go) and DirSource, which follows a
// directory (source.go).
//
// Keys are parsed once, when loaded; signing code uses Key.Signer and
// Key.Method directly. A Ring never changes after it is made, so a key
// rotator can build a new one and swap it in atomically.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
)

// Signing is the kind of the JWT signing keys (docs/design.md, "Signing
// keys and rotation"). A signing key file is "<yyyymmddThhmmssZ>-<kid>.pem"
// holding one PEM private key (see ParsePEM), or a public key that is
// published and never signs; kid is its RFC 7638 thumbprint.
//
// Schedule rule: a new key is published JWKS_MAX_AGE + the reload
// interval before it signs — by then every replica has read its file and
// every verifier's cached JWKS has it — and a replaced key stays published
// for the access-token lifetime + leeway after it stopped signing, until
// every token it signed has expired.
var Signing = Kind[*Key, *Set]{
	name: "signing", what: "signing key (a *.pem file with a private key)",
	suffix: ".pem", kidLen: thumbprintLen,
	parse:   ParsePEM,
	marshal: (*Key).MarshalPEM,
	timing: func(l Lifetimes) Timing {
		return Timing{PrePublish: l.JWKSMaxAge + l.Reload, RetireAfter: l.Access + l.Leeway}
	},
	set:     NewSet,
	logName: "signing key", logActive: "signing with key", logFrom: "signs_from",
	logAttrs: func(k *Key) []slog.Attr { return []slog.Attr{slog.String("alg", k.Alg)} },
}

// RSABits is the modulus size Generate uses for RS256 keys. 2048 bits is
// the NIST SP 800-57 minimum through 2030 and what most identity providers
// issue; it signs about 4× faster than 3072. ParsePEM accepts RSA keys of
// 2048 bits or more.
const RSABits = 2048

// Key is a parsed signing (or verification) key. Its Stamp's ID is the
// RFC 7638 JWK thumbprint (unpadded base64url of SHA-256).
type Key struct {
	Stamp
	Alg    string            // verify.ES256, verify.EdDSA or verify.RS256
	Signer crypto.Signer     // *ecdsa.PrivateKey, ed25519.PrivateKey or *rsa.PrivateKey; nil for a public-only key
	Public crypto.PublicKey  // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
	Method jwt.SigningMethod // jwt.SigningMethodES256, jwt.SigningMethodEdDSA or jwt.SigningMethodRS256
}

func (k *Key) canSign() bool { return k.Signer != nil }

func (k *Key) complete() bool {
	return k.ID != "" && k.Public != nil && k.Method != nil && k.Alg == k.Method.Alg()
}

// Generate makes a new key for alg: a P-256 key for ES256, an Ed25519 key
// for EdDSA, a 2048-bit RSA key (RSABits) for RS256. Created is now,
// truncated to the second (the precision of key file names).
func Generate(alg string) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case verify.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case verify.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case verify.RS256:
		signer, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		return nil, fmt.Errorf("keys: unsupported algorithm %q (want %s, %s or %s)", alg, verify.ES256, verify.EdDSA, verify.RS256)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: %w", alg, err)
	}
	return newKey(signer, signer.Public(), time.Now().UTC().Truncate(time.Second))
}

func newKey(signer crypto.Signer, pub crypto.PublicKey, created time.Time) (*Key, error) {
	k := &Key{Stamp: Stamp{Created: created}, Signer: signer, Public: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys: unsupported ECDSA curve %s (only P-256/ES256)", p.Curve.Params().Name)
		}
		if _, err := p.Bytes(); err != nil {
			return nil, fmt.Errorf("keys: invalid ECDSA public key: %w", err)
		}
		k.Alg, k.Method = verify.ES256, jwt.SigningMethodES256
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, errors.New("keys: bad Ed25519 public key length")
		}
		k.Alg, k.Method = verify.EdDSA, jwt.SigningMethodEdDSA
	case *rsa.PublicKey:
		if p.N.BitLen() < RSABits {
			return nil, fmt.Errorf("keys: RSA key of %d bits is too small (minimum %d)", p.N.BitLen(), RSABits)
		}
		k.Alg, k.Method = verify.RS256, jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("keys: unsupported key type %T", pub)
	}
	k.ID = thumbprint(k.jwk(false))
	return k, nil
}

// jwk is the JSON Web Key form of a public key (RFC 7517 §4, RFC 7518 §6,
// RFC 8037 §2).
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

var b64 = base64.RawURLEncoding

// thumbprintLen is the length of a signing key's kid: a SHA-256 in
// unpadded base64url.
const thumbprintLen = 43

// jwk returns the public JWK of k; with meta, kid, alg and use are set.
func (k *Key) jwk(meta bool) jwk {
	var j jwk
	switch p := k.Public.(type) {
	case *ecdsa.PublicKey:
		// RFC 7518 §6.2.1.2: coordinates are the full field size.
		raw, _ := p.Bytes() // 0x04 || X || Y; checked in newKey
		size := (len(raw) - 1) / 2
		j = jwk{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1 : 1+size]), Y: b64.EncodeToString(raw[1+size:])}
	case ed25519.PublicKey:
		j = jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(p)}
	case *rsa.PublicKey:
		// RFC 7518 §6.3.1: unsigned big-endian, minimal length.
		j = jwk{Kty: "RSA", N: b64.EncodeToString(p.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())}
	}
	if meta {
		j.Kid, j.Alg, j.Use = k.ID, k.Alg, "sig"
	}
	return j
}

// thumbprint computes the RFC 7638 thumbprint of j: SHA-256 over the
// required members in lexicographic order with no whitespace (RFC 8037 §2
// for OKP). All member values are base64url or fixed names, so they need
// no JSON escaping.
func thumbprint(j jwk) string {
	var s string
	switch j.Kty {
	case "EC":
		s = `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	case "OKP":
		s = `{"crv":"` + j.Crv + `","kty":"OKP","x":"` + j.X + `"}`
	case "RSA":
		s = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	}
	sum := sha256.Sum256([]byte(s))
	return b64.EncodeToString(sum[:])
}

// ParsePEM parses a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC
// PRIVATE KEY", optionally preceded by an "EC PARAMETERS" block as OpenSSL
// writes it) or PKCS#1 ("RSA PRIVATE KEY"). A PKIX "PUBLIC KEY" gives a
// public-only key (Signer nil) that can be published but not sign. The
// algorithm is inferred from the key type: P-256 → ES256, Ed25519 → EdDSA,
// RSA (≥ 2048 bits) → RS256. Encrypted PEM and files holding more than one
// key are refused.
func ParsePEM(data []byte, created time.Time) (*Key, error) {
	var block *pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if block != nil {
			return nil, errors.New("keys: more than one PEM block")
		}
		block = b
	}
	if block == nil {
		return nil, errors.New("keys: no PEM block found")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted {
		return nil, errors.New("keys: encrypted PEM is not supported")
	}
	var (
		raw any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		raw, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PUBLIC KEY":
		raw, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("keys: unsupported PEM block type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: parse %s: %w", block.Type, err)
	}
	switch key := raw.(type) {
	case *ecdsa.PrivateKey:
		return newKey(key, key.Public(), created)
	case ed25519.PrivateKey:
		return newKey(key, key.Public(), created)
	case *rsa.PrivateKey:
		return newKey(key, key.Public(), created)
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
		return newKey(nil, key, created)
	default:
		return nil, fmt.Errorf("keys: unsupported key type %T", raw)
	}
}

// MarshalPEM encodes the private key as PKCS#8 ("PRIVATE KEY"), or a
// public-only key as PKIX ("PUBLIC KEY").
func (k *Key) MarshalPEM() ([]byte, error) {
	if k.Signer == nil {
		der, err := x509.MarshalPKIXPublicKey(k.Public)
		if err != nil {
			return nil, fmt.Errorf("keys: marshal public key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("keys: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Set is the ring of signing keys in use — the current key signs, every
// key is published — with its JWKS.
type Set struct {
	Ring[*Key]
	jwks []byte
}

// NewSet returns a Set signing with signing (which must have a private
// key) and publishing signing and published (see NewRing).
func NewSet(signing *Key, published ...*Key) (*Set, error) {
	r, err := NewRing(signing, published...)
	if err != nil {
		return nil, err
	}
	s := &Set{Ring: *r}
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, len(s.keys))}
	for i, k := range s.keys {
		doc.Keys[i] = k.jwk(true)
	}
	if s.jwks, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("keys: encode JWKS: %w", err)
	}
	return s, nil
}

// JWKS returns the RFC 7517 JSON Web Key Set of the published public keys,
//
//	{"keys":[{"kty":"EC","use":"sig","alg":"ES256","kid":"…","crv":"P-256","x":"…","y":"…"}, …]}
//
// with kty OKP/crv Ed25519/x for EdDSA keys and kty RSA/n/e for RS256 keys.
// It is computed once by NewSet; the returned slice is shared and must not
// be modified.
func (s *Set) JWKS() []byte { return s.jwks }

// Ephemeral returns a Set with one freshly generated key for alg, kept only
// in memory (for development: tokens it signs become unverifiable when the
// process exits).
func Ephemeral(alg string) (*Set, error) {
	k, err := Generate(alg)
	if err != nil {
		return nil, err
	}
	return NewSet(k)
}
