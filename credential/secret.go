package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
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

// MinClientSecretChars is the shortest client secret an operator may give
// tokend (a bootstrap file): 43 characters of base64url carry 256 bits,
// which is what lets tokend keep only a SHA-256 of a secret.
const MinClientSecretChars = 43

// ClientSecretProblem returns what is wrong with a client secret an
// operator chose, or "". It must be at least MinClientSecretChars
// characters from A-Z a-z 0-9 - . _ ~ (RFC 3986 unreserved), like
// NewClientSecret's: characters HTTP Basic carries unchanged whether or
// not the client form-encodes them. RFC 6749 §2.3.1 has tokend decode the
// Basic credentials as a form, so the "+" of a base64 secret that `curl
// -u`, Go's SetBasicAuth or Python requests send as is would arrive as a
// space, and the client would get invalid_client.
func ClientSecretProblem(secret string) string {
	if len(secret) < MinClientSecretChars || !unreserved(secret) {
		return fmt.Sprintf("a client secret must be at least %d characters of A-Z a-z 0-9 - . _ ~, which every HTTP Basic client sends unchanged "+
			"(a \"+\", \"/\" or \"=\" of base64 is form-decoded by tokend, RFC 6749 §2.3.1); make one with `openssl rand -hex 32`", MinClientSecretChars)
	}
	return ""
}

// unreserved reports whether s has only RFC 3986 unreserved characters
// (A-Z a-z 0-9 - . _ ~), which form-encoding leaves as they are.
func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
