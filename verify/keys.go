package verify

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// supportedAlgs are the algorithms a Verifier can check: those tokend
// signs with. Never "none", never HMAC.
var supportedAlgs = [...]string{ES256, EdDSA, RS256}

// methods holds the signature check of each supported alg, indexed like
// supportedAlgs.
var methods = [len(supportedAlgs)]jwt.SigningMethod{
	jwt.SigningMethodES256,
	jwt.SigningMethodEdDSA,
	jwt.SigningMethodRS256,
}

func algIndex(alg string) int {
	switch alg {
	case ES256:
		return 0
	case EdDSA:
		return 1
	case RS256:
		return 2
	}
	return -1
}

// minRSABits is the smallest RSA modulus accepted (as tokend's own keys).
const minRSABits = 2048

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

// publicKey is one key a token may be checked with.
type publicKey struct {
	alg string // the key's alg; "" if its JWK has none
	pub any    // *ecdsa.PublicKey (P-256), ed25519.PublicKey or *rsa.PublicKey
}

// accepts reports whether a token with header alg may be checked with k:
// alg must be the key's own alg when it has one, and fit its type.
func (k *publicKey) accepts(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch p := k.pub.(type) {
	case *ecdsa.PublicKey:
		return alg == ES256 && p != nil && p.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == EdDSA && len(p) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return alg == RS256 && p != nil && p.N != nil && p.N.BitLen() >= minRSABits
	}
	return false
}

// lookup returns the key named kid: from the KeySet, or from the JWKS.
func (v *Verifier) lookup(ctx context.Context, kid string) (publicKey, error) {
	if v.static != nil {
		k, ok := v.static.LookupKey(kid)
		if !ok || k.Algorithm == "" {
			return publicKey{}, invalidf("the access token is signed by an unknown key", "kid %q", kid)
		}
		return publicKey{alg: k.Algorithm, pub: k.Public}, nil
	}
	k, err := v.key(ctx, kid)
	if err != nil {
		return publicKey{}, err
	}
	return *k, nil
}

// keyCache is one fetched JWKS, immutable.
type keyCache struct {
	keys    map[string]*publicKey // by kid
	expires time.Time
}

// key returns the published key named kid, fetching the JWKS when the
// cache is empty or expired, or (rate-limited) when kid is unknown.
func (v *Verifier) key(ctx context.Context, kid string) (*publicKey, error) {
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
			v.log.LogAttrs(fctx, slog.LevelWarn, "fetching the JWKS failed", slog.String("url", v.jwksURL), slog.String("error", err.Error()))
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
		v.keys.Store(c)
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
	body, h, err := v.get(ctx, v.jwksURL)
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", v.jwksURL, err)
	}
	return &keyCache{keys: keys, expires: start.Add(cacheTTL(h))}, nil
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

type jwkJSON struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS parses every usable signature key of a JWK Set, by kid. Keys
// for other uses or algorithms, without a kid, or malformed are skipped
// (a set may hold keys for other consumers); a set with no usable key is
// an error.
func parseJWKS(body []byte) (map[string]*publicKey, error) {
	var doc struct {
		Keys []jwkJSON `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	keys := make(map[string]*publicKey, len(doc.Keys))
	var skipped []string
	for _, j := range doc.Keys {
		if j.Kid == "" {
			continue
		}
		if _, dup := keys[j.Kid]; dup {
			continue
		}
		k, err := parseJWK(j)
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

func parseJWK(j jwkJSON) (*publicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q", j.Use)
	}
	if j.Alg != "" && algIndex(j.Alg) < 0 {
		return nil, fmt.Errorf("unsupported alg %q", j.Alg)
	}
	k := &publicKey{alg: j.Alg}
	switch j.Kty {
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, errX := decodeSegment(nil, j.X)
		y, errY := decodeSegment(nil, j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 coordinates")
		}
		// crypto/ecdh checks that the point is on the curve.
		if _, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
			return nil, err
		}
		k.pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, err := decodeSegment(nil, j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		k.pub = ed25519.PublicKey(x)
	case "RSA":
		n, errN := decodeSegment(nil, j.N)
		e, errE := decodeSegment(nil, j.E)
		if errN != nil || errE != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA key")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small", pub.N.BitLen())
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		k.pub = pub
	default:
		return nil, fmt.Errorf("unsupported kty %q", j.Kty)
	}
	if j.Alg != "" && !k.accepts(j.Alg) {
		return nil, fmt.Errorf("alg %s does not fit kty %s", j.Alg, j.Kty)
	}
	return k, nil
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
