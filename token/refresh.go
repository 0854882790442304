// Package token defines tokend's token formats: opaque refresh tokens and
// identifiers (this file) and signed JWT access tokens (access.go).
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/tokend/tokend/store"
)

// A refresh token is
//
//	rt_<user id>_<session id>_<secret>
//
// where both ids are 26-character lower-case base32 strings (128 random
// bits) and the secret is 256 random bits in unpadded base64url (43
// characters). The user id is the routing part: every Redis key of the
// user's sessions carries it as the hash tag, so one session — and all of a
// user's sessions — live in one Cluster slot. Only SHA-256(secret) is
// stored. The "rt_" prefix makes the token recognisable to secret scanners
// and impossible to confuse with a JWT.
const (
	refreshPrefix = "rt_"
	idLen         = 26
	secretBytes   = 32
	secretLen     = 43 // base64.RawURLEncoding.EncodedLen(secretBytes)
	// RefreshLen is the length of every refresh token.
	RefreshLen = len(refreshPrefix) + idLen + 1 + idLen + 1 + secretLen
)

// ErrMalformed means a string is not a refresh token of this format.
var ErrMalformed = errors.New("token: malformed refresh token")

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a new random 128-bit identifier (26 lower-case base32
// characters) for users and sessions.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return idEncoding.EncodeToString(b[:])
}

// Refresh is a parsed refresh token.
type Refresh struct {
	UserID    string
	SessionID string
	Hash      store.TokenHash // SHA-256 of the secret part
}

// NewRefresh mints a refresh token for the session and returns it with its
// parsed form.
func NewRefresh(userID, sessionID string) (string, Refresh) {
	var secret [secretBytes]byte
	_, _ = rand.Read(secret[:])
	var b strings.Builder
	b.Grow(RefreshLen)
	b.WriteString(refreshPrefix)
	b.WriteString(userID)
	b.WriteByte('_')
	b.WriteString(sessionID)
	b.WriteByte('_')
	enc := base64.RawURLEncoding.EncodeToString(secret[:])
	b.WriteString(enc)
	return b.String(), Refresh{UserID: userID, SessionID: sessionID, Hash: sha256.Sum256([]byte(enc))}
}

// ParseRefresh splits and checks a refresh token. It does not consult any
// store; it only rejects strings that cannot be a token of ours.
func ParseRefresh(s string) (Refresh, error) {
	if len(s) != RefreshLen || !strings.HasPrefix(s, refreshPrefix) {
		return Refresh{}, ErrMalformed
	}
	rest := s[len(refreshPrefix):]
	uid, sid, secret := rest[:idLen], rest[idLen+1:2*idLen+1], rest[2*idLen+2:]
	if rest[idLen] != '_' || rest[2*idLen+1] != '_' || !ValidID(uid) || !ValidID(sid) || !validSecret(secret) {
		return Refresh{}, ErrMalformed
	}
	return Refresh{UserID: uid, SessionID: sid, Hash: sha256.Sum256([]byte(secret))}, nil
}

// ValidID reports whether s has the form of an id made by NewID.
func ValidID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	// The last character of a 128-bit base32 string carries 3 padding bits.
	_, err := idEncoding.DecodeString(s)
	return err == nil
}

func validSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
