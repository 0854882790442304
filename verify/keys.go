package verify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/verify/internal/jose"
)

// Key is a public key that verifies access tokens, as a KeySet gives it.
type Key struct {
	// Algorithm is the one alg the key verifies: ES256, EdDSA or RS256.
	Algorithm string
	// Public is an *ecdsa.PublicKey on P-256 (ES256), an
	// ed25519.PublicKey (EdDSA) or an *rsa.PublicKey of at least 2048
	// bits (RS256).
	Public crypto.PublicKey
}

// KeySet is the set of keys a Verifier made by NewWithKeys trusts. The
// Verifier calls LookupKey for every token, so a key set that rotates is
// seen at once; it must be safe for concurrent use, and fast.
type KeySet interface {
	// LookupKey returns the key named kid, and false if there is none.
	LookupKey(kid string) (Key, bool)
}

// lookup returns the key named kid: from the KeySet, or from the JWKS.
func (v *Verifier) lookup(ctx context.Context, kid string) (jose.PublicKey, error) {
	if v.static != nil {
		k, ok := v.static.LookupKey(kid)
		if !ok || k.Algorithm == "" {
			return jose.PublicKey{}, invalidf("the access token is signed by an unknown key", "kid %q", kid)
		}
		return jose.PublicKey{Alg: k.Algorithm, Pub: k.Public}, nil
	}
	k, err := v.key(ctx, kid)
	if err != nil {
		return jose.PublicKey{}, err
	}
	return *k, nil
}

// keyCache is one fetched JWKS, immutable.
type keyCache struct {
	keys    map[string]*jose.PublicKey // by kid
	expires time.Time
}

// key returns the published key named kid, fetching the JWKS when the
// cache is empty or expired, or (rate-limited) when kid is unknown.
func (v *Verifier) key(ctx context.Context, kid string) (*jose.PublicKey, error) {
	c := v.keys.Load()
	if c != nil && v.now().Before(c.expires) {
		if k, ok := c.keys[kid]; ok {
			return k, nil
		}
		// An unknown kid: perhaps a key published since the last fetch.
		c, err := v.refresh(ctx, true)
		if err != nil {
			return nil, err
		}
		if k, ok := c.keys[kid]; ok {
			return k, nil
		}
		return nil, invalidf("the access token is signed by an unknown key", "kid %q", kid)
	}
	fresh, err := v.refresh(ctx, false)
	if err != nil {
		if c != nil { // stale if error: keep verifying with the keys we had
			if k, ok := c.keys[kid]; ok {
				return k, nil
			}
		}
		return nil, err
	}
	if k, ok := fresh.keys[kid]; ok {
		return k, nil
	}
	return nil, invalidf("the access token is signed by an unknown key", "kid %q", kid)
}

// refresh fetches the JWKS, once for all concurrent callers. For an
// unknown kid (unknownKid) it fetches at most once per refetch interval
// and otherwise returns the cached set. A caller whose ctx ends stops
// waiting; the fetch goes on for the others.
func (v *Verifier) refresh(ctx context.Context, unknownKid bool) (*keyCache, error) {
	// Separate flights: a rate-limited refetch for an unknown kid must not
	// stand in for the fetch of an expired set.
	flight := 0
	if unknownKid {
		flight = 1
	}
	f := v.flights.do(flight, func() (*keyCache, error) {
		now := v.now()
		v.mu.Lock()
		cur := v.keys.Load()
		if unknownKid && cur != nil && !v.lastRefetch.IsZero() && now.Sub(v.lastRefetch) < v.refetch {
			v.mu.Unlock()
			return cur, nil
		}
		if cur == nil && !v.lastFailure.IsZero() && now.Sub(v.lastFailure) < MinCacheTTL {
			v.mu.Unlock()
			return nil, &tokenError{kind: ErrUnavailable, desc: "the signing keys are unavailable", detail: "retrying shortly"}
		}
		if unknownKid {
			v.lastRefetch = now
		}
		v.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		c, err := v.fetch(fctx)
		if err != nil {
			v.log.LogAttrs(fctx, slog.LevelWarn, "fetching the JWKS failed", slog.String("issuer", v.issuer), slog.String("error", err.Error()))
			v.mu.Lock()
			v.lastFailure = now
			v.mu.Unlock()
			if cur != nil {
				// Keep the stale keys for one more refetch interval
				// rather than try again on every request.
				v.keys.Store(&keyCache{keys: cur.keys, expires: now.Add(max(v.refetch, MinCacheTTL))})
			}
			return nil, &tokenError{kind: ErrUnavailable, desc: "the signing keys are unavailable", cause: err}
		}
		if cur != nil {
			// Keep the keys that did not change, so that tokens cached
			// with them find the very same key.
			for kid, k := range c.keys {
				if o, ok := cur.keys[kid]; ok && sameKey(*o, *k) {
					c.keys[kid] = o
				}
			}
		}
		if old := v.keys.Swap(c); old != nil && v.cache != nil {
			v.cache.dropKeys(gone(old.keys, c.keys))
		}
		return c, nil
	})
	select {
	case <-f.done:
		return f.c, f.err
	case <-ctx.Done():
		return nil, &tokenError{kind: ErrUnavailable, desc: "the signing keys are unavailable", cause: ctx.Err()}
	}
}

// fetch GETs and parses the JWKS and computes how long to cache it.
func (v *Verifier) fetch(ctx context.Context) (*keyCache, error) {
	// Freshness counts from when the request was sent (RFC 9111 §4.2.3),
	// never from when the answer arrived.
	start := v.now()
	jwksURL, _, err := v.resolve(ctx)
	if err != nil {
		return nil, err
	}
	body, h, err := v.get(ctx, jwksURL)
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", jwksURL, err)
	}
	return &keyCache{keys: keys, expires: start.Add(cacheTTL(h))}, nil
}

// gone returns the kids of old that new does not have, or has with other
// key material: their tokens are no longer verified by what they were.
func gone(old, new map[string]*jose.PublicKey) map[string]bool {
	var kids map[string]bool
	for kid, k := range old {
		if n, ok := new[kid]; !ok || !sameKey(*k, *n) {
			if kids == nil {
				kids = map[string]bool{}
			}
			kids[kid] = true
		}
	}
	return kids
}

// cacheTTL is the freshness lifetime of a response (RFC 9111 §4.2.1):
// max-age less Age; no-store or no-cache give MinCacheTTL; no max-age gives
// DefaultCacheTTL. The result is within [MinCacheTTL, MaxCacheTTL].
func cacheTTL(h http.Header) time.Duration {
	ttl := DefaultCacheTTL
	for _, cc := range h.Values("Cache-Control") {
		for _, d := range strings.Split(cc, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return MinCacheTTL
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return MinCacheTTL
				}
				ttl = time.Duration(min(n, int64(MaxCacheTTL/time.Second))) * time.Second
				if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
					ttl -= time.Duration(min(age, int64(MaxCacheTTL/time.Second))) * time.Second
				}
			}
		}
	}
	return min(max(ttl, MinCacheTTL), MaxCacheTTL)
}

// parseJWKS parses every usable signature key of a JWK Set, by kid. Keys
// for other uses or algorithms, without a kid, or malformed are skipped
// (a set may hold keys for other consumers); a set with no usable key is
// an error.
func parseJWKS(body []byte) (map[string]*jose.PublicKey, error) {
	var doc struct {
		Keys []jose.JWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	keys := make(map[string]*jose.PublicKey, len(doc.Keys))
	var skipped []string
	for _, j := range doc.Keys {
		if j.Kid == "" {
			continue
		}
		if _, dup := keys[j.Kid]; dup {
			continue
		}
		k, err := jose.ParseJWK(j)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("kid %q: %v", j.Kid, err))
			continue
		}
		keys[j.Kid] = k
	}
	if len(keys) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no usable signature key (%s)", strings.Join(skipped, "; "))
		}
		return nil, errors.New("no usable signature key")
	}
	return keys, nil
}

// readAll reads at most limit bytes of resp's body.
func readAll(resp *http.Response, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return b, nil
}

// flights runs at most one JWKS fetch of each kind at a time, shared by
// every caller that asks while it runs.
type flights struct {
	mu  sync.Mutex
	cur [2]*flight // 0: the set expired; 1: an unknown kid
}

// flight is one fetch; c and err are set before done is closed.
type flight struct {
	done chan struct{}
	c    *keyCache
	err  error
}

// do returns the running flight of kind i, or starts fn as one.
func (fs *flights) do(i int, fn func() (*keyCache, error)) *flight {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.cur[i]; f != nil {
		return f
	}
	f := &flight{done: make(chan struct{})}
	fs.cur[i] = f
	go func() {
		defer close(f.done)
		f.c, f.err = fn()
		fs.mu.Lock()
		fs.cur[i] = nil
		fs.mu.Unlock()
	}()
	return f
}
