package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// ClientSecretPrefix starts every client secret made by NewClientSecret; it
// makes secrets recognisable to secret scanners.
const ClientSecretPrefix = "cs_"

// NewClientSecret returns a new client secret: "cs_" followed by 256 bits
// from crypto/rand in unpadded base64url (46 characters in all). The
// secret's entropy is what makes a fast hash (SHA-256) safe for storing it.
func NewClientSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return ClientSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashClientSecret returns the SHA-256 of secret (the whole string, prefix
// included), the form in which a client secret is stored.
func HashClientSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// VerifyClientSecret reports whether secret hashes to hash. The comparison
// is constant-time.
func VerifyClientSecret(secret string, hash []byte) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}
