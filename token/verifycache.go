package token

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/tokend/tokend/verify"
)

// VerifyCache remembers access tokens that verified, so that a token
// checked again — a resource server introspecting the same token on every
// request it serves — costs a hash and a map lookup instead of a signature
// verification (ES256 verification is the largest cost of introspection).
//
// An entry is used only while the token has not expired (with the same
// leeway as Verify) and while the key that signed it is still published, so
// dropping a key from the key set invalidates its tokens here at once.
// Anything else — a miss, an expiry, a key change — goes to the Issuer.
// The cache holds at most about 2×max entries: two generations of a map,
// the older dropped when the newer fills.
type VerifyCache struct {
	issuer *Issuer
	max    int

	mu       sync.RWMutex
	cur, old map[[32]byte]*verify.Claims // shared with callers: read only
}

// NewVerifyCache returns a cache of at most about 2×max verified tokens in
// front of issuer; max ≤ 0 means 10,000.
func NewVerifyCache(issuer *Issuer, max int) *VerifyCache {
	if max <= 0 {
		max = 10_000
	}
	return &VerifyCache{issuer: issuer, max: max, cur: make(map[[32]byte]*verify.Claims), old: map[[32]byte]*verify.Claims{}}
}

// Verify is Issuer.Verify with the cache in front. The claims it returns
// may be shared with other callers: they must not be modified.
func (c *VerifyCache) Verify(tok string, now time.Time) (*verify.Claims, error) {
	key := sha256.Sum256([]byte(tok))
	c.mu.RLock()
	cl, ok := c.cur[key]
	if !ok {
		cl, ok = c.old[key]
	}
	c.mu.RUnlock()
	if ok && now.Before(cl.ExpiresAt.Add(AccessLeeway)) {
		if set := c.issuer.src.Keys(); set != nil {
			if _, published := set.Lookup(cl.KeyID); published {
				return cl, nil
			}
		}
	}
	cl, err := c.issuer.Verify(tok, now)
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[[32]byte]*verify.Claims, c.max)
	}
	c.cur[key] = cl
	c.mu.Unlock()
	return cl, nil
}
