package keys

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Set is an immutable set of keys: one that signs and all that are
// published (in the JWKS and for verification). The signing key is always
// published. A Set is safe for concurrent use; to change keys, build a new
// Set and swap the pointer.
type Set struct {
	signing *Key
	keys    []*Key
	byID    map[string]*Key
	jwks    []byte
}

// NewSet returns a Set signing with signing (which must have a private
// key) and publishing signing and published. Keys with a kid already in the
// set are dropped, so the first occurrence wins and the signing key is
// listed first.
func NewSet(signing *Key, published ...*Key) (*Set, error) {
	if signing == nil {
		return nil, errors.New("keys: no signing key")
	}
	if signing.Signer == nil {
		return nil, fmt.Errorf("keys: signing key %s has no private key", signing.ID)
	}
	s := &Set{signing: signing, byID: make(map[string]*Key, 1+len(published))}
	for _, k := range append([]*Key{signing}, published...) {
		if k == nil || k.ID == "" || k.Public == nil || k.Method == nil || k.Alg != k.Method.Alg() {
			return nil, errors.New("keys: incomplete key (use Generate, ParsePEM or New)")
		}
		if _, dup := s.byID[k.ID]; dup {
			continue
		}
		s.byID[k.ID] = k
		s.keys = append(s.keys, k)
	}
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, len(s.keys))}
	for i, k := range s.keys {
		doc.Keys[i] = k.jwk(true)
	}
	var err error
	if s.jwks, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("keys: encode JWKS: %w", err)
	}
	return s, nil
}

// Signing returns the key that signs new tokens.
func (s *Set) Signing() *Key { return s.signing }

// Lookup returns the published key with the given kid.
func (s *Set) Lookup(kid string) (*Key, bool) {
	k, ok := s.byID[kid]
	return k, ok
}

// Keys returns the published keys, the signing key first. The slice is a
// copy; the keys are shared and must not be modified.
func (s *Set) Keys() []*Key {
	return append([]*Key(nil), s.keys...)
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
