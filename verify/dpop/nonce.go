package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// DefaultNonceBucket is the time bucket of Nonces when none is given: a
// nonce is accepted for two to three buckets (see Nonces.Check).
const DefaultNonceBucket = 5 * time.Minute

// minNonceKey is the shortest key NewNonces takes.
const minNonceKey = 16

// nonceLen is the length of a nonce: base64url of an 8-byte bucket number
// and a 16-byte MAC.
const nonceLen = 32

// Nonces makes and checks stateless server nonces (RFC 9449 §8, §9): a
// nonce is a time bucket's number and an HMAC-SHA-256 of it, so every
// replica holding the same keys issues the same nonce and accepts the
// others', without sharing any state. It is safe for concurrent use.
type Nonces struct {
	keys   [][]byte // derived from the keys given, the first makes nonces
	bucket time.Duration
	cur    atomic.Pointer[currentNonce]
}

type currentNonce struct {
	bucket int64
	nonce  string
}

// NewNonces returns Nonces keyed by keys, each at least 16 bytes: the
// first makes new nonces, any of them checks one, so keys can be rotated
// by putting the new key first and dropping the old one a bucket later.
// The keys may be secrets with another use (tokend passes its refresh
// keys): Nonces derives a key of its own from each. bucket ≤ 0 means
// DefaultNonceBucket.
func NewNonces(keys [][]byte, bucket time.Duration) (*Nonces, error) {
	if len(keys) == 0 {
		return nil, errors.New("dpop: Nonces need a key")
	}
	if bucket <= 0 {
		bucket = DefaultNonceBucket
	}
	n := &Nonces{bucket: bucket}
	for _, k := range keys {
		if len(k) < minNonceKey {
			return nil, errors.New("dpop: a nonce key must have at least 16 bytes")
		}
		m := hmac.New(sha256.New, k)
		m.Write([]byte("tokend DPoP nonce key v1"))
		n.keys = append(n.keys, m.Sum(nil))
	}
	return n, nil
}

func (n *Nonces) bucketOf(now time.Time) int64 {
	return now.UnixNano() / int64(n.bucket)
}

func (n *Nonces) make(key []byte, bucket int64) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(bucket))
	m := hmac.New(sha256.New, key)
	m.Write(b[:8])
	copy(b[8:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Current returns the nonce to send at now, in a DPoP-Nonce header.
func (n *Nonces) Current(now time.Time) string {
	b := n.bucketOf(now)
	if c := n.cur.Load(); c != nil && c.bucket == b {
		return c.nonce
	}
	s := n.make(n.keys[0], b)
	n.cur.Store(&currentNonce{bucket: b, nonce: s})
	return s
}

// Check accepts a nonce made under any of the keys for now's bucket, the
// one before (a nonce sent just before a bucket ends stays good), or the
// one after (another replica whose clock is slightly ahead made it). It
// refuses anything else — no nonce, a stale one, a forged one — with an
// error matching ErrUseNonce; answer it with the Current nonce. Its
// signature fits Params.Nonce.
func (n *Nonces) Check(nonce string, now time.Time) error {
	if nonce == "" {
		return &Error{Err: ErrUseNonce, Reason: "the DPoP proof must carry the server's nonce"}
	}
	var b [8 + 16]byte
	if len(nonce) != nonceLen {
		return &Error{Err: ErrUseNonce, Reason: "the DPoP nonce is not one this server issued"}
	}
	if _, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(nonce)); err != nil {
		return &Error{Err: ErrUseNonce, Reason: "the DPoP nonce is not one this server issued"}
	}
	bucket := int64(binary.BigEndian.Uint64(b[:8]))
	genuine := false
	for _, k := range n.keys {
		if hmac.Equal([]byte(n.make(k, bucket)), []byte(nonce)) {
			genuine = true
			break
		}
	}
	if !genuine {
		return &Error{Err: ErrUseNonce, Reason: "the DPoP nonce is not one this server issued"}
	}
	if d := n.bucketOf(now) - bucket; d > 1 || d < -1 {
		return &Error{Err: ErrUseNonce, Reason: "the DPoP nonce has expired"}
	}
	return nil
}
