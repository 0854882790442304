package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"time"
)

// Refresh is the kind of the refresh keys: the server-held secrets that
// refresh tokens are derived from (docs/design.md, "Refresh tokens:
// derived, not stored", "Refresh keys"). A refresh token's MAC is
// HMAC-SHA256 under one of them, so the server can check any generation
// of any session without asking Redis, and nothing in Redis lets anyone
// make a token. They live in the key directory beside the signing keys,
// never in Redis. A refresh key file is "<yyyymmddThhmmssZ>-<kid>.refresh"
// holding one PEM block of type "TOKEND REFRESH KEY" with the 32 secret
// bytes (see ParseRefreshPEM).
//
// Schedule rule: the active key is used for new sessions, and a session
// keeps the key it started with. A new key is used the reload interval
// after its timestamp — by then every replica has read it and can verify
// the tokens it derives (a pending key already verifies, so a replica
// whose clock runs ahead is understood) — and a replaced key stays usable
// for the refresh-token lifetime + leeway after it stopped being used for
// new sessions, until every session that started with it has expired.
var Refresh = Kind[*RefreshKey, *RefreshSet]{
	name: "refresh", what: "refresh key (a *.refresh file)",
	suffix: ".refresh", kidLen: RefreshKeyIDLen,
	parse:   ParseRefreshPEM,
	marshal: func(k *RefreshKey) ([]byte, error) { return k.MarshalPEM(), nil },
	timing: func(l Lifetimes) Timing {
		return Timing{PrePublish: l.Reload, RetireAfter: l.Refresh + l.Leeway}
	},
	set:     NewRing[*RefreshKey],
	logName: "refresh key", logActive: "new sessions use refresh key", logFrom: "used_from",
	logAttrs: func(*RefreshKey) []slog.Attr { return nil },
}

const (
	// RefreshKeySize is the size of a refresh key's secret in bytes.
	RefreshKeySize = 32
	// RefreshKeyIDLen is the length of a refresh key's id (kid): 40 bits
	// in lower-case base32.
	RefreshKeyIDLen = 8

	refreshPEMType = "TOKEND REFRESH KEY"
	// refreshKIDLabel is what a key's id is derived from: kid = the first
	// 40 bits of Derive(refreshKIDLabel). A PRF output, it tells nothing
	// about the secret, and a file whose name does not match its contents
	// is caught on load.
	refreshKIDLabel = "tokend-refresh-kid-v1"
)

var kidEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RefreshKey is one refresh key. Its Stamp's ID is RefreshKeyIDLen
// lower-case base32 characters. Its secret never leaves the package except
// into a MAC, a derived key or a key file: String, GoString and LogValue
// (value receivers, so a copy prints the same) show only the kid.
type RefreshKey struct {
	Stamp
	secret [RefreshKeySize]byte
	macs   *sync.Pool // of *macState: HMAC-SHA256 keyed with secret
}

func (k *RefreshKey) canSign() bool  { return true }
func (k *RefreshKey) complete() bool { return k.macs != nil }

// GenerateRefreshKey makes a new random refresh key. Created is now,
// truncated to the second (the precision of key file names).
func GenerateRefreshKey() *RefreshKey {
	var secret [RefreshKeySize]byte
	_, _ = rand.Read(secret[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return newRefreshKey(secret, time.Now().UTC().Truncate(time.Second))
}

func newRefreshKey(secret [RefreshKeySize]byte, created time.Time) *RefreshKey {
	k := &RefreshKey{Stamp: Stamp{Created: created}, secret: secret}
	k.macs = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, k.secret[:])} }}
	k.ID = kidEncoding.EncodeToString(k.Derive(refreshKIDLabel)[:5])
	return k
}

// Derive returns 32 bytes derived from k for the use label names:
// HMAC-SHA256(secret, label). A label is a constant of its use (the kid's
// is "tokend-refresh-kid-v1") and holds no 0x00 byte, which every refresh
// token's MAC input does (package token), so each use gets a value
// independent of the others and of every token's MAC, and the secret
// itself never leaves k.
func (k *RefreshKey) Derive(label string) []byte {
	return k.MAC(make([]byte, 0, sha256.Size), []byte(label))
}

// MAC appends HMAC-SHA256(secret, msg) to dst and returns the result. It is
// safe for concurrent use, and for messages of up to 128 bytes neither msg
// nor dst escapes (a refresh token's MAC costs no allocation).
func (k *RefreshKey) MAC(dst, msg []byte) []byte {
	m := k.macs.Get().(*macState)
	m.h.Reset()
	if len(msg) <= len(m.buf) {
		n := copy(m.buf[:], msg)
		m.h.Write(m.buf[:n])
	} else {
		m.h.Write(bytes.Clone(msg))
	}
	sum := m.h.Sum(m.sum[:0])
	dst = append(dst, sum...)
	k.macs.Put(m)
	return dst
}

// macState is a keyed HMAC with buffers, so that MAC's arguments do not
// escape through the hash.Hash interface.
type macState struct {
	h   hash.Hash
	buf [128]byte
	sum [sha256.Size]byte
}

// String names the key by its kid; the secret is never printed.
func (k RefreshKey) String() string { return "refresh key " + k.ID }

// GoString is String, so %#v does not print the secret either.
func (k RefreshKey) GoString() string { return k.String() }

// LogValue makes slog print the kid only.
func (k RefreshKey) LogValue() slog.Value { return slog.StringValue(k.ID) }

// MarshalPEM encodes the key as a "TOKEND REFRESH KEY" PEM block.
func (k *RefreshKey) MarshalPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: refreshPEMType, Bytes: k.secret[:]})
}

// ParseRefreshPEM parses a key written by MarshalPEM: exactly one
// "TOKEND REFRESH KEY" block of RefreshKeySize bytes.
func ParseRefreshPEM(data []byte, created time.Time) (*RefreshKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("keys: no PEM block found")
	}
	if block.Type != refreshPEMType {
		return nil, fmt.Errorf("keys: PEM block type %q is not %q", block.Type, refreshPEMType)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("keys: refresh key PEM must have no headers")
	}
	if more, _ := pem.Decode(rest); more != nil {
		return nil, errors.New("keys: more than one PEM block")
	}
	if len(block.Bytes) != RefreshKeySize {
		return nil, fmt.Errorf("keys: refresh key is %d bytes, want %d", len(block.Bytes), RefreshKeySize)
	}
	return newRefreshKey([RefreshKeySize]byte(block.Bytes), created), nil
}

// RefreshSet is the ring of refresh keys in use.
type RefreshSet = Ring[*RefreshKey]

// EphemeralRefresh returns a ring with one fresh random refresh key, kept
// only in memory (development: refresh tokens become invalid when the
// process exits, and replicas cannot check each other's).
func EphemeralRefresh() *RefreshSet {
	r, _ := NewRing(GenerateRefreshKey())
	return r
}
