package testkit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

var b64 = base64.RawURLEncoding

// Edit returns a copy of m with the pairs of kv (key, value, key, value,
// ...) applied: each key set to its value, or deleted when the value is
// nil. m itself is not changed.
func Edit(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// Encode assembles a compact JWS from header and claims exactly as given,
// nothing checked, signed by sign (nil: an empty signature).
func Encode(t testing.TB, header, claims map[string]any, sign func(signingInput string) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign(in)
	}
	return in + "." + b64.EncodeToString(sig)
}

// Signer signs with method and key, whatever a token's header says.
func Signer(t testing.TB, method jwt.SigningMethod, key any) func(signingInput string) []byte {
	return func(in string) []byte {
		sig, err := method.Sign(in, key)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// HS256 signs with HMAC-SHA256 under secret: the "public key as secret"
// forgery.
func HS256(secret []byte) func(signingInput string) []byte {
	return func(in string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return m.Sum(nil)
	}
}

// Decode returns the header and the claims of a compact JWS, verifying
// nothing.
func Decode(t testing.TB, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWS part %d: %v", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("JWS part %d %s: %v", i, raw, err)
		}
	}
	return header, claims
}
