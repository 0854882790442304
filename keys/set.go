package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Ring is an immutable set of keys of one kind: the current key, in use
// for what is made now (it signs new access tokens; new sessions derive
// their refresh tokens from it), and every key that is kept — published
// in the JWKS, verifying refresh tokens — the current one included. A
// Ring is safe for concurrent use; to change keys, build a new one and
// swap the pointer.
type Ring[K dirKey] struct {
	current K
	keys    []K
	byID    map[string]K
}

// NewRing returns a Ring whose current key is current (which must be able
// to sign), keeping current and more. Keys with a kid already in the ring
// are dropped, so the first occurrence wins and the current key is listed
// first.
func NewRing[K dirKey](current K, more ...K) (*Ring[K], error) {
	var none K
	if current == none {
		return nil, errors.New("keys: no current key")
	}
	if current.complete() && !current.canSign() {
		return nil, fmt.Errorf("keys: key %s has no private key to sign with", current.stamp().ID)
	}
	r := &Ring[K]{current: current, byID: make(map[string]K, 1+len(more))}
	for _, k := range append([]K{current}, more...) {
		if k == none || !k.complete() {
			return nil, errors.New("keys: incomplete key (make keys with this package's Generate and Parse functions)")
		}
		id := k.stamp().ID
		if _, dup := r.byID[id]; dup {
			continue
		}
		r.byID[id] = k
		r.keys = append(r.keys, k)
	}
	return r, nil
}

// Current returns the key in use.
func (r *Ring[K]) Current() K { return r.current }

// Lookup returns the kept key with the given kid.
func (r *Ring[K]) Lookup(kid string) (K, bool) {
	k, ok := r.byID[kid]
	return k, ok
}

// Keys returns the kept keys, the current one first. The slice is a copy;
// the keys are shared and must not be modified.
func (r *Ring[K]) Keys() []K { return slices.Clone(r.keys) }

// RefreshSet is the ring of refresh keys in use.
type RefreshSet = Ring[*RefreshKey]

// Set is the ring of signing keys in use — the current key signs, every
// key is published — with its JWKS.
type Set struct {
	Ring[*Key]
	jwks []byte
}

// NewSet returns a Set signing with signing (which must have a private
// key) and publishing signing and published (see NewRing).
func NewSet(signing *Key, published ...*Key) (*Set, error) {
	r, err := NewRing(signing, published...)
	if err != nil {
		return nil, err
	}
	s := &Set{Ring: *r}
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, len(s.keys))}
	for i, k := range s.keys {
		doc.Keys[i] = k.jwk(true)
	}
	if s.jwks, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("keys: encode JWKS: %w", err)
	}
	return s, nil
}

// JWKS returns the RFC 7517 JSON Web Key Set of the published public keys,
//
//	{"keys":[{"kty":"EC","use":"sig","alg":"ES256","kid":"…","crv":"P-256","x":"…","y":"…"}, …]}
//
// with kty OKP/crv Ed25519/x for EdDSA keys and kty RSA/n/e for RS256 keys.
// It is computed once by NewSet; the returned slice is shared and must not
// be modified.
func (s *Set) JWKS() []byte { return s.jwks }

// Ephemeral returns a Set with one freshly generated key for alg, kept only
// in memory (for development: tokens it signs become unverifiable when the
// process exits).
func Ephemeral(alg string) (*Set, error) {
	k, err := Generate(alg)
	if err != nil {
		return nil, err
	}
	return NewSet(k)
}

// EphemeralRefresh returns a ring with one fresh random refresh key, kept
// only in memory (development: refresh tokens become invalid when the
// process exits, and replicas cannot check each other's).
func EphemeralRefresh() *RefreshSet {
	r, _ := NewRing(GenerateRefreshKey())
	return r
}
