// Package token defines tokend's token formats: derived refresh tokens and
// identifiers (this file) and signed JWT access tokens (access.go).
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"github.com/tokend/tokend/keys"
)

// A refresh token is derived, not stored (docs/design.md, "Refresh tokens:
// derived, not stored"):
//
//	rt_<user id>_<session id>_<generation>_<kid>_<mac>
//
// where
//   - user id, session id: 26 lower-case base32 characters each (128
//     random bits, NewID). The user id is the routing part: every Redis
//     key of the user's sessions carries it as the hash tag.
//   - generation: the session's rotation counter, in decimal without
//     leading zeros (0 for the token of the sign-in), at most 2⁶⁴−1.
//   - kid: the id of the refresh key the session started with
//     (keys.RefreshKeyIDLen = 8 lower-case base32 characters).
//   - mac: HMAC-SHA256, under that key, of macLabel 0x00 user id 0x00
//     session id 0x00 generation (8 bytes, big-endian): 256 bits in
//     unpadded base64url (43 characters).
//
// The token is 111 to 130 characters of [a-z0-9A-Z_-] (URL-safe, nothing
// to escape). It parses by fixed rules: the ids at fixed offsets from the
// left, the MAC and kid at fixed offsets from the right, the generation in
// between; the MAC's base64url must be canonical, so every token has
// exactly one spelling. The RefreshPrefix "rt_" makes refresh tokens
// findable by secret scanners and impossible to confuse with a JWT (which
// has dots): the server tells the two kinds apart by it.
const (
	RefreshPrefix = "rt_"
	idLen         = 26
	macBytes      = 32
	macLen        = 43 // base64.RawURLEncoding.EncodedLen(macBytes)
	maxGenLen     = 20 // len("18446744073709551615")
	// fixedLen is everything but the generation's digits.
	fixedLen = len(RefreshPrefix) + idLen + 1 + idLen + 1 + 1 + keys.RefreshKeyIDLen + 1 + macLen
	// MinRefreshLen and MaxRefreshLen bound the length of a refresh token.
	MinRefreshLen = fixedLen + 1
	MaxRefreshLen = fixedLen + maxGenLen

	// macLabel separates refresh-token MACs from anything else a refresh
	// key might ever be used for (its kid is derived under another label).
	macLabel = "tokend-refresh-v1"
)

// Refresh errors. A token that is not ErrMalformed but ErrNotGenuine has
// the right shape but was not made by this server with a key it still
// holds: a forgery, a corrupted token, or one whose key was retired after
// every session it served expired.
var (
	ErrMalformed  = errors.New("token: malformed refresh token")
	ErrNotGenuine = errors.New("token: refresh token does not verify")
	// ErrNoRefreshKey: the key source has no key to mint with.
	ErrNoRefreshKey = errors.New("token: no refresh key")
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

// macEncoding refuses non-canonical spellings (set padding bits).
var macEncoding = base64.RawURLEncoding.Strict()

// NewID returns a new random 128-bit identifier (26 lower-case base32
// characters) for users and sessions.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return idEncoding.EncodeToString(b[:])
}

// Refresh is what a refresh token says: which session, which generation,
// under which key.
type Refresh struct {
	UserID     string
	SessionID  string
	Generation uint64
	KeyID      string
}

// RefreshKeySource provides the current refresh keys; Refresher calls it
// for every token. keys.DirSource is one.
type RefreshKeySource interface {
	RefreshKeys() *keys.RefreshSet
}

// StaticRefreshKeys is a RefreshKeySource whose set never changes.
type StaticRefreshKeys struct{ Set *keys.RefreshSet }

// RefreshKeys returns the set.
func (s StaticRefreshKeys) RefreshKeys() *keys.RefreshSet { return s.Set }

// Refresher mints and verifies refresh tokens. It never touches a store:
// verifying a token is one HMAC. Safe for concurrent use.
type Refresher struct {
	src RefreshKeySource
}

// NewRefresher returns a Refresher over src. It panics if src is nil.
func NewRefresher(src RefreshKeySource) *Refresher {
	if src == nil {
		panic("token: NewRefresher: nil RefreshKeySource")
	}
	return &Refresher{src: src}
}

// Mint returns generation gen of a session that starts now, under the
// current refresh key, and what it says. The session keeps that key: later
// generations come from Derive.
func (r *Refresher) Mint(userID, sessionID string, gen uint64) (string, Refresh, error) {
	set := r.src.RefreshKeys()
	if set == nil || set.Current() == nil {
		return "", Refresh{}, ErrNoRefreshKey
	}
	k := set.Current()
	rt := Refresh{UserID: userID, SessionID: sessionID, Generation: gen, KeyID: k.ID}
	return encodeRefresh(k, rt), rt, nil
}

// Derive returns generation gen of the session parent belongs to, under
// the session's own key: the same inputs always give the same token, which
// is what lets a retry be answered with the very token the first answer
// carried. ErrNotGenuine if the key is no longer held.
func (r *Refresher) Derive(parent Refresh, gen uint64) (string, error) {
	set := r.src.RefreshKeys()
	if set == nil {
		return "", ErrNoRefreshKey
	}
	k, ok := set.Lookup(parent.KeyID)
	if !ok {
		return "", ErrNotGenuine
	}
	parent.Generation = gen
	return encodeRefresh(k, parent), nil
}

// Verify parses s and checks its MAC (constant time) under the key its kid
// names. ErrMalformed if s is not a refresh token's shape, ErrNotGenuine
// if the MAC does not verify or the key is unknown. Nothing else is
// consulted: the caller decides with the store whether the generation is
// current.
func (r *Refresher) Verify(s string) (Refresh, error) {
	rt, mac, err := parseRefresh(s)
	if err != nil {
		return Refresh{}, err
	}
	set := r.src.RefreshKeys()
	if set == nil {
		return Refresh{}, ErrNotGenuine
	}
	k, ok := set.Lookup(rt.KeyID)
	if !ok {
		return Refresh{}, ErrNotGenuine
	}
	var msg [len(macLabel) + 1 + idLen + 1 + idLen + 1 + 8]byte
	var want [macBytes]byte
	k.MAC(want[:0], macInput(&msg, rt))
	if !hmac.Equal(want[:], mac[:]) {
		return Refresh{}, ErrNotGenuine
	}
	return rt, nil
}

// ParseRefresh checks that s has a refresh token's shape and returns what
// it claims, WITHOUT checking the MAC: anyone can write such a string.
// Only use it where nothing is trusted or changed on its word (tests,
// telling a refresh token from an access token); authenticate with
// Refresher.Verify.
func ParseRefresh(s string) (Refresh, error) {
	rt, _, err := parseRefresh(s)
	return rt, err
}

// macInput fills buf with the MAC's input for rt.
func macInput(buf *[len(macLabel) + 1 + idLen + 1 + idLen + 1 + 8]byte, rt Refresh) []byte {
	b := append(buf[:0], macLabel...)
	b = append(b, 0)
	b = append(b, rt.UserID...)
	b = append(b, 0)
	b = append(b, rt.SessionID...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, rt.Generation)
}

func encodeRefresh(k *keys.RefreshKey, rt Refresh) string {
	var msg [len(macLabel) + 1 + idLen + 1 + idLen + 1 + 8]byte
	var mac [macBytes]byte
	k.MAC(mac[:0], macInput(&msg, rt))
	var buf [MaxRefreshLen]byte
	b := append(buf[:0], RefreshPrefix...)
	b = append(b, rt.UserID...)
	b = append(b, '_')
	b = append(b, rt.SessionID...)
	b = append(b, '_')
	b = strconv.AppendUint(b, rt.Generation, 10)
	b = append(b, '_')
	b = append(b, rt.KeyID...)
	b = append(b, '_')
	b = macEncoding.AppendEncode(b, mac[:])
	return string(b)
}

// parseRefresh applies the fixed parse rules (see the format above).
func parseRefresh(s string) (Refresh, [macBytes]byte, error) {
	var mac [macBytes]byte
	n := len(s)
	if n < MinRefreshLen || n > MaxRefreshLen || s[:len(RefreshPrefix)] != RefreshPrefix {
		return Refresh{}, mac, ErrMalformed
	}
	const sidAt = len(RefreshPrefix) + idLen + 1
	const genAt = sidAt + idLen + 1
	macAt := n - macLen
	kidAt := macAt - 1 - keys.RefreshKeyIDLen
	genEnd := kidAt - 1
	uid, sid := s[len(RefreshPrefix):sidAt-1], s[sidAt:genAt-1]
	gen, kid := s[genAt:genEnd], s[kidAt:macAt-1]
	if s[sidAt-1] != '_' || s[genAt-1] != '_' || s[genEnd] != '_' || s[macAt-1] != '_' ||
		!ValidID(uid) || !ValidID(sid) || !validKeyID(kid) {
		return Refresh{}, mac, ErrMalformed
	}
	g, ok := parseGeneration(gen)
	if !ok {
		return Refresh{}, mac, ErrMalformed
	}
	var enc [macLen]byte // a copy, so that the conversion does not allocate
	copy(enc[:], s[macAt:])
	if m, err := macEncoding.Decode(mac[:], enc[:]); err != nil || m != macBytes {
		return Refresh{}, mac, ErrMalformed
	}
	return Refresh{UserID: uid, SessionID: sid, Generation: g, KeyID: kid}, mac, nil
}

// parseGeneration accepts only the canonical decimal spelling of a uint64:
// digits, no sign, no leading zero (except "0" itself), no overflow.
func parseGeneration(s string) (uint64, bool) {
	if s == "" || len(s) > maxGenLen || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	g, err := strconv.ParseUint(s, 10, 64)
	return g, err == nil
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
	// The last character carries 3 bits of the id and 2 padding bits,
	// which must be zero: every id has exactly one spelling.
	return strings.IndexByte(idAlphabet, s[idLen-1])&3 == 0
}

// validKeyID reports whether s has the form of a refresh key's kid (40
// bits: eight base32 characters, no padding bits).
func validKeyID(s string) bool {
	if len(s) != keys.RefreshKeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
