package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"hash/maphash"
	"sync"

	"github.com/tokend/tokend/verify/internal/jose"
)

// The verified-token cache (docs/design.md, "The verified-token cache").
// A token whose signature verified is remembered with its claims and the
// key that verified it, keyed by the token itself: a Go map compares the
// whole key on a hit, so only the very same bytes hit. What a token says
// never changes; what it is checked against may (the clock, the
// revocation feed, the published keys), and is checked on every use.

// cacheEntry is a token that verified: its claims and its key.
type cacheEntry struct {
	claims Claims
	key    jose.PublicKey
}

// cacheShards splits the cache so that concurrent requests rarely wait
// for each other.
const cacheShards = 16

// tokenCache holds at most max entries: in each shard two generations of
// at most max/(2·shards) each; when the newer fills, the older is dropped
// and the newer takes its place. A hit in the older generation moves the
// entry to the newer, so tokens in use stay.
type tokenCache struct {
	seed   maphash.Seed
	shards []cacheShard
	per    int // entries per generation of a shard
}

type cacheShard struct {
	mu       sync.RWMutex
	cur, old map[string]*cacheEntry
}

func newTokenCache(max int) *tokenCache {
	shards := cacheShards
	if max < 2*shards {
		shards = 1
	}
	c := &tokenCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, shards), per: max / (2 * shards)}
	if c.per < 1 {
		c.per = 1
	}
	for i := range c.shards {
		c.shards[i].cur, c.shards[i].old = map[string]*cacheEntry{}, map[string]*cacheEntry{}
	}
	return c
}

// shard picks the shard of tok by the hash of its last characters (the
// signature's, random for a genuine token).
func (c *tokenCache) shard(tok string) *cacheShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	tail := tok
	if len(tail) > 16 {
		tail = tail[len(tail)-16:]
	}
	return &c.shards[maphash.String(c.seed, tail)%uint64(len(c.shards))]
}

// get returns the entry of tok, or nil.
func (c *tokenCache) get(tok string) *cacheEntry {
	s := c.shard(tok)
	s.mu.RLock()
	e, ok := s.cur[tok]
	if ok {
		s.mu.RUnlock()
		return e
	}
	e, ok = s.old[tok]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	s.mu.Lock()
	if s.old[tok] == e {
		delete(s.old, tok)
		c.put(s, tok, e)
	}
	s.mu.Unlock()
	return e
}

// add remembers e as tok's entry.
func (c *tokenCache) add(tok string, e *cacheEntry) {
	s := c.shard(tok)
	s.mu.Lock()
	c.put(s, tok, e)
	s.mu.Unlock()
}

// put adds e to s's newer generation, s.mu held.
func (c *tokenCache) put(s *cacheShard, tok string, e *cacheEntry) {
	if _, ok := s.cur[tok]; !ok && len(s.cur) >= c.per {
		s.old, s.cur = s.cur, make(map[string]*cacheEntry, c.per)
	}
	s.cur[tok] = e
	delete(s.old, tok)
}

// remove forgets tok.
func (c *tokenCache) remove(tok string) {
	s := c.shard(tok)
	s.mu.Lock()
	delete(s.cur, tok)
	delete(s.old, tok)
	s.mu.Unlock()
}

// dropKeys forgets every token whose key id is in kids.
func (c *tokenCache) dropKeys(kids map[string]bool) {
	if len(kids) == 0 {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, m := range []map[string]*cacheEntry{s.cur, s.old} {
			for tok, e := range m {
				if kids[e.claims.KeyID] {
					delete(m, tok)
				}
			}
		}
		s.mu.Unlock()
	}
}

// len is the number of entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.cur) + len(s.old)
		s.mu.RUnlock()
	}
	return n
}

// sameKey reports whether a and b are the same key for the same alg. The
// same pointer is the common case — a KeySet gives the same key each time,
// and a refetched JWKS keeps the keys it had — and costs no comparison.
func sameKey(a, b jose.PublicKey) bool {
	if a.Alg != b.Alg {
		return false
	}
	switch p := a.Pub.(type) {
	case *ecdsa.PublicKey:
		q, ok := b.Pub.(*ecdsa.PublicKey)
		return ok && (p == q || p.Equal(q))
	case *rsa.PublicKey:
		q, ok := b.Pub.(*rsa.PublicKey)
		return ok && (p == q || p.Equal(q))
	case ed25519.PublicKey:
		q, ok := b.Pub.(ed25519.PublicKey)
		return ok && bytes.Equal(p, q)
	}
	return false
}
