package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestEdit(t *testing.T) {
	m := map[string]any{"a": 1, "b": 2}
	got := Edit(m, "a", nil, "c", 3, "b", "x")
	if want := map[string]any{"b": "x", "c": 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("Edit = %v, want %v", got, want)
	}
	if want := map[string]any{"a": 1, "b": 2}; !reflect.DeepEqual(m, want) {
		t.Errorf("Edit changed its argument: %v", m)
	}
	if got := Edit(nil, "a", 1); !reflect.DeepEqual(got, map[string]any{"a": 1}) {
		t.Errorf("Edit(nil) = %v", got)
	}
}

// Encode's tokens are what golang-jwt reads: signed by Signer or HS256,
// they verify; Decode gives back the header and the claims.
func TestEncodeDecode(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		alg    string
		sign   func(string) []byte
		verify any
	}{
		{"ES256", Signer(t, jwt.SigningMethodES256, key), &key.PublicKey},
		{"HS256", HS256(secret), secret},
	} {
		tok := Encode(t, map[string]any{"alg": tc.alg, "typ": "at+jwt"}, map[string]any{"sub": "alice", "n": 1}, tc.sign)
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return tc.verify, nil }, jwt.WithValidMethods([]string{tc.alg})); err != nil {
			t.Errorf("%s: golang-jwt refuses %s: %v", tc.alg, tok, err)
		}
		h, c := Decode(t, tok)
		if h["alg"] != tc.alg || h["typ"] != "at+jwt" || c["sub"] != "alice" || c["n"] != float64(1) {
			t.Errorf("%s: Decode = %v, %v", tc.alg, h, c)
		}
	}
	if tok := Encode(t, map[string]any{"alg": "none"}, nil, nil); tok[len(tok)-1] != '.' {
		t.Errorf("unsigned token %q does not end in an empty signature", tok)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&b, "%d", i)
			_ = b.String()
		}()
	}
	wg.Wait()
	if got := len(b.String()); got != 8 {
		t.Errorf("%d bytes written, want 8", got)
	}
}
