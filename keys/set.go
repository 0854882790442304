package keys

import (
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
type Ring[K KeyType] struct {
	current K
	keys    []K
	byID    map[string]K
}

// NewRing returns a Ring whose current key is current (which must be able
// to sign), keeping current and more. Keys with a kid already in the ring
// are dropped, so the first occurrence wins and the current key is listed
// first.
func NewRing[K KeyType](current K, more ...K) (*Ring[K], error) {
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
