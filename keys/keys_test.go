package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
)

var allAlgs = []string{verify.ES256, verify.EdDSA, verify.RS256}

// testKeys caches one generated key per algorithm (RSA generation is slow).
var testKeys = map[string]*Key{}

func genKey(t testing.TB, alg string) *Key {
	t.Helper()
	if k, ok := testKeys[alg]; ok {
		return k
	}
	k, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	testKeys[alg] = k
	return k
}

func mustDecode(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerate(t *testing.T) {
	want := map[string]struct {
		method jwt.SigningMethod
		signer string
	}{
		verify.ES256: {jwt.SigningMethodES256, "*ecdsa.PrivateKey"},
		verify.EdDSA: {jwt.SigningMethodEdDSA, "ed25519.PrivateKey"},
		verify.RS256: {jwt.SigningMethodRS256, "*rsa.PrivateKey"},
	}
	for _, alg := range allAlgs {
		k := genKey(t, alg)
		if k.Alg != alg || k.Method != want[alg].method || k.Method.Alg() != alg {
			t.Errorf("%s: Alg %q Method %v", alg, k.Alg, k.Method)
		}
		if got, w := fmt.Sprintf("%T", k.Signer), want[alg].signer; got != w {
			t.Errorf("%s: Signer is %s, want %s", alg, got, w)
		}
		if len(k.ID) != 43 {
			t.Errorf("%s: kid %q is not a base64url SHA-256", alg, k.ID)
		}
		if k.Created.IsZero() || k.Created.Location() != time.UTC || k.Created.Nanosecond() != 0 {
			t.Errorf("%s: Created %v", alg, k.Created)
		}
		if time.Since(k.Created) > time.Minute {
			t.Errorf("%s: Created %v is not now", alg, k.Created)
		}
		// The key signs and the public key verifies through golang-jwt.
		sig, err := k.Method.Sign("hello", k.Signer)
		if err != nil {
			t.Fatalf("%s: sign: %v", alg, err)
		}
		if err := k.Method.Verify("hello", sig, k.Public); err != nil {
			t.Fatalf("%s: verify: %v", alg, err)
		}
	}
	if rk := genKey(t, verify.RS256); rk.Public.(*rsa.PublicKey).N.BitLen() != 2048 {
		t.Errorf("RSA key has %d bits", rk.Public.(*rsa.PublicKey).N.BitLen())
	}
	if _, err := Generate("HS256"); err == nil {
		t.Error("Generate(HS256) succeeded")
	}
	if _, err := Generate("none"); err == nil {
		t.Error("Generate(none) succeeded")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	created := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, alg := range allAlgs {
		k := genKey(t, alg)
		data, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
			t.Fatalf("%s: not PKCS#8 PEM:\n%s", alg, data)
		}
		k2, err := ParsePEM(data, created)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if k2.ID != k.ID || k2.Alg != alg || k2.Method != k.Method || !k2.Created.Equal(created) {
			t.Errorf("%s: round trip gave %+v", alg, k2)
		}
		if !k2.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public) {
			t.Errorf("%s: public key differs", alg)
		}
		// A signature by the parsed key verifies with the original.
		sig, err := k2.Method.Sign("x", k2.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Method.Verify("x", sig, k.Public); err != nil {
			t.Errorf("%s: %v", alg, err)
		}

		// Public-only round trip.
		pub, err := wrapKey(nil, k.Public, created)
		if err != nil {
			t.Fatal(err)
		}
		pdata, err := pub.MarshalPEM()
		if err != nil || !bytes.HasPrefix(pdata, []byte("-----BEGIN PUBLIC KEY-----")) {
			t.Fatalf("%s: public PEM: %v\n%s", alg, err, pdata)
		}
		pub2, err := ParsePEM(pdata, created)
		if err != nil || pub2.Signer != nil || pub2.ID != k.ID || pub2.Alg != alg {
			t.Fatalf("%s: public round trip: %+v, %v", alg, pub2, err)
		}
	}
}

// Traditional (non-PKCS#8) encodings, as OpenSSL writes them.
func TestParsePEMLegacy(t *testing.T) {
	ec := genKey(t, verify.ES256)
	der, err := x509.MarshalECPrivateKey(ec.Signer.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for _, data := range [][]byte{sec1, append(params, sec1...)} {
		k, err := ParsePEM(data, time.Time{})
		if err != nil || k.ID != ec.ID || k.Alg != verify.ES256 {
			t.Fatalf("SEC 1: %+v, %v", k, err)
		}
	}

	rk := genKey(t, verify.RS256)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk.Signer.(*rsa.PrivateKey))})
	k, err := ParsePEM(pkcs1, time.Time{})
	if err != nil || k.ID != rk.ID || k.Alg != verify.RS256 {
		t.Fatalf("PKCS#1: %+v, %v", k, err)
	}
}

func TestParsePEMErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa1024der, _ := x509.MarshalPKCS8PrivateKey(rsa1024)
	good, _ := genKey(t, verify.ES256).MarshalPEM()
	enc := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	cases := map[string][]byte{
		"empty":       nil,
		"not pem":     []byte("hello"),
		"garbage der": enc("PRIVATE KEY", []byte("garbage")),
		"certificate": enc("CERTIFICATE", []byte("x")),
		"P-384":       enc("PRIVATE KEY", p384der),
		"RSA-1024":    enc("PRIVATE KEY", rsa1024der),
		"two keys":    append(append([]byte{}, good...), good...),
		"encrypted": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte("x")}),
		"sec1 garbage":  enc("EC PRIVATE KEY", []byte("x")),
		"pkcs1 garbage": enc("RSA PRIVATE KEY", []byte("x")),
		"pkix garbage":  enc("PUBLIC KEY", []byte("x")),
	}
	for name, data := range cases {
		if k, err := ParsePEM(data, time.Time{}); err == nil {
			t.Errorf("%s: ParsePEM = %+v, want error", name, k)
		}
	}
	if _, err := wrapKey(p384, nil, time.Time{}); err == nil {
		t.Error("wrapKey(P-384) succeeded")
	}
	if _, err := wrapKey(nil, "not a key", time.Time{}); err == nil {
		t.Error("wrapKey(string) succeeded")
	}
	if _, err := wrapKey(nil, ed25519.PublicKey{1, 2, 3}, time.Time{}); err == nil {
		t.Error("wrapKey(short ed25519) succeeded")
	}
	//lint:ignore SA1019 a point off the curve can only be made from raw coordinates
	bad := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}
	if _, err := wrapKey(nil, bad, time.Time{}); err == nil {
		t.Error("wrapKey(point not on curve) succeeded")
	}
}

// RFC 7638 §3.1: the thumbprint of the example RSA key.
func TestThumbprintRFC7638(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(mustDecode(t, n)), E: 65537}
	k, err := wrapKey(nil, pub, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; k.ID != want {
		t.Fatalf("kid = %s, want %s", k.ID, want)
	}
	if j := k.jwk(false); j.N != n || j.E != "AQAB" {
		t.Fatalf("jwk = %+v", j)
	}
}

// RFC 8037 appendix A.1–A.3: the Ed25519 example key and its thumbprint.
func TestThumbprintRFC8037(t *testing.T) {
	seed := mustDecode(t, "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	k, err := wrapKey(ed25519.NewKeyFromSeed(seed), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if j := k.jwk(false); j.X != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Fatalf("x = %s", j.X)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; k.ID != want {
		t.Fatalf("kid = %s, want %s", k.ID, want)
	}
}

// RFC 7515 appendix A.3: a P-256 key's coordinates, and the thumbprint
// input they give.
func TestThumbprintEC(t *testing.T) {
	d := mustDecode(t, "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI")
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	k, err := wrapKey(priv, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	const x, y = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
	if j := k.jwk(false); j.X != x || j.Y != y || j.Crv != "P-256" || j.Kty != "EC" {
		t.Fatalf("jwk = %+v", j)
	}
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); k.ID != want {
		t.Fatalf("kid = %s, want %s", k.ID, want)
	}
}

// Coordinates with leading zero bytes are still encoded at full width.
func TestECFixedWidth(t *testing.T) {
	for i := 0; i < 2000; i++ {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := priv.PublicKey.Bytes()
		if raw[1] != 0 && raw[33] != 0 {
			continue
		}
		k, err := wrapKey(priv, nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		j := k.jwk(false)
		if len(mustDecode(t, j.X)) != 32 || len(mustDecode(t, j.Y)) != 32 {
			t.Fatalf("coordinate not 32 bytes: %+v", j)
		}
		return
	}
	t.Skip("no key with a leading zero coordinate byte in 2000 tries")
}

func TestWriteFileLoadDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	dir := filepath.Join(t.TempDir(), "keys")
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	var written []*Key
	// Write out of order: verify.EdDSA newest, then verify.RS256 oldest, verify.ES256 in between.
	for i, alg := range []string{verify.EdDSA, verify.RS256, verify.ES256} {
		k := *genKey(t, alg)
		k.Created = base.Add(time.Duration([]int{2, 0, 1}[i]) * time.Hour)
		path, err := Signing.WriteFile(dir, &k)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, Signing.fileName(&k)); path != want {
			t.Errorf("path %s, want %s", path, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		written = append(written, &k)
		// Refuses to overwrite.
		if _, err := Signing.WriteFile(dir, &k); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Errorf("second WriteFile: %v", err)
		}
	}
	if name := Signing.fileName(written[0]); name != "20240102T050405Z-"+written[0].ID+".pem" {
		t.Errorf("FileName = %s", name)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	// Files that are not keys are ignored.
	os.WriteFile(filepath.Join(dir, "README"), []byte("hi"), 0o600)
	os.WriteFile(filepath.Join(dir, ".hidden.pem"), []byte("junk"), 0o600)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".key-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	ks, err := loadKeys(Signing, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 3 || ks[0].Alg != verify.RS256 || ks[1].Alg != verify.ES256 || ks[2].Alg != verify.EdDSA {
		t.Fatalf("LoadDir order: %v", algs(ks))
	}
	for i, k := range ks {
		if !k.Created.Equal(base.Add(time.Duration(i) * time.Hour)) {
			t.Errorf("key %d Created %v", i, k.Created)
		}
	}

}

func algs(ks []*Key) []string {
	var s []string
	for _, k := range ks {
		s = append(s, k.Alg)
	}
	return s
}

func TestLoadDirErrors(t *testing.T) {
	k := genKey(t, verify.ES256)
	good, _ := k.MarshalPEM()
	name := Signing.fileName(k)
	cases := map[string]struct {
		file string
		data []byte
	}{
		"bad name":       {"mykey.pem", good},
		"bad timestamp":  {"20241302T000000Z-" + k.ID + ".pem", good},
		"no kid":         {"20240102T030405Z-.pem", good},
		"kid mismatch":   {"20240102T030405Z-" + genKey(t, verify.EdDSA).ID + ".pem", good},
		"bad pem":        {name, []byte("not a key")},
		"truncated":      {name, good[:len(good)/2]},
		"cert not a key": {name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})},
	}
	for what, c := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, c.file), c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadKeys(Signing, dir)
		if err == nil || !strings.Contains(err.Error(), c.file) {
			t.Errorf("%s: err = %v, want an error naming %s", what, err, c.file)
		}
	}

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(Signing, dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory named .pem: %v", err)
	}

	if _, err := loadKeys(Signing, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("loadKeys(missing) succeeded")
	}
	empty := t.TempDir()
	if ks, err := loadKeys(Signing, empty); err != nil || len(ks) != 0 {
		t.Errorf("loadKeys(Signing, empty) = %v, %v", ks, err)
	}
}

func TestLoadDirSymlink(t *testing.T) {
	k := genKey(t, verify.ES256)
	src := t.TempDir()
	path, err := Signing.WriteFile(src, k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(path, filepath.Join(dir, Signing.fileName(k))); err != nil {
		t.Skip(err)
	}
	ks, err := loadKeys(Signing, dir)
	if err != nil || len(ks) != 1 || ks[0].ID != k.ID {
		t.Fatalf("LoadDir via symlink = %v, %v", ks, err)
	}
}

func TestWriteFileErrors(t *testing.T) {
	k := genKey(t, verify.ES256)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Signing.WriteFile(file, k); err == nil {
		t.Error("WriteFile into a file succeeded")
	}
	if _, err := Signing.WriteFile(t.TempDir(), &Key{Public: "not a key"}); err == nil {
		t.Error("WriteFile of a bad public key succeeded")
	}
}

func TestSet(t *testing.T) {
	es, ed, rs := genKey(t, verify.ES256), genKey(t, verify.EdDSA), genKey(t, verify.RS256)
	s, err := NewSet(es, ed, es, rs, ed)
	if err != nil {
		t.Fatal(err)
	}
	if s.Current() != es {
		t.Error("Current() is not the signing key")
	}
	ks := s.Keys()
	if len(ks) != 3 || ks[0] != es || ks[1] != ed || ks[2] != rs {
		t.Fatalf("Keys() = %v", algs(ks))
	}
	ks[0] = nil // a copy
	if s.Keys()[0] != es {
		t.Error("Keys() exposes the internal slice")
	}
	for _, k := range []*Key{es, ed, rs} {
		if got, ok := s.Lookup(k.ID); !ok || got != k {
			t.Errorf("Lookup(%s) = %v, %v", k.ID, got, ok)
		}
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Error("Lookup(unknown) found a key")
	}

	// Signing key only: published too.
	s1, err := NewSet(ed)
	if err != nil || len(s1.Keys()) != 1 {
		t.Fatal(err)
	}
	if _, ok := s1.Lookup(ed.ID); !ok {
		t.Error("signing key not published")
	}

	pub, _ := wrapKey(nil, es.Public, time.Time{})
	for name, args := range map[string][]*Key{
		"nil signing":    {nil},
		"public signing": {pub},
		"nil published":  {es, nil},
		"empty key":      {es, {}},
		"alg mismatch":   {es, {Stamp: Stamp{ID: "x"}, Alg: verify.RS256, Public: es.Public, Method: jwt.SigningMethodES256}},
	} {
		if _, err := NewSet(args[0], args[1:]...); err == nil {
			t.Errorf("%s: NewSet succeeded", name)
		}
	}
	// A public-only key can be published.
	if _, err := NewSet(ed, pub); err != nil {
		t.Error(err)
	}
}

// The JWKS has the RFC 7517/7518/8037 members, and the keys it describes
// are the set's public keys: rebuild each from its JWK and verify a
// signature made by the private key.
func TestJWKS(t *testing.T) {
	es, ed, rs := genKey(t, verify.ES256), genKey(t, verify.EdDSA), genKey(t, verify.RS256)
	s, err := NewSet(es, ed, rs)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(s.JWKS()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JWKS %s: %v", s.JWKS(), err)
	}
	if len(doc.Keys) != 3 {
		t.Fatalf("JWKS has %d keys", len(doc.Keys))
	}
	wantMembers := map[string][]string{
		verify.ES256: {"kty", "crv", "x", "y", "kid", "alg", "use"},
		verify.EdDSA: {"kty", "crv", "x", "kid", "alg", "use"},
		verify.RS256: {"kty", "n", "e", "kid", "alg", "use"},
	}
	for i, k := range []*Key{es, ed, rs} {
		j := doc.Keys[i]
		if len(j) != len(wantMembers[k.Alg]) {
			t.Errorf("%s: members %v, want %v", k.Alg, j, wantMembers[k.Alg])
		}
		for _, m := range wantMembers[k.Alg] {
			if j[m] == "" {
				t.Errorf("%s: member %q missing", k.Alg, m)
			}
		}
		if j["kid"] != k.ID || j["alg"] != k.Alg || j["use"] != "sig" {
			t.Errorf("%s: %v", k.Alg, j)
		}
		var pub crypto.PublicKey
		switch k.Alg {
		case verify.ES256:
			if j["kty"] != "EC" || j["crv"] != "P-256" {
				t.Fatalf("EC jwk %v", j)
			}
			raw := append([]byte{4}, append(mustDecode(t, j["x"]), mustDecode(t, j["y"])...)...)
			pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		case verify.EdDSA:
			if j["kty"] != "OKP" || j["crv"] != "Ed25519" {
				t.Fatalf("OKP jwk %v", j)
			}
			pub = ed25519.PublicKey(mustDecode(t, j["x"]))
		case verify.RS256:
			if j["kty"] != "RSA" || j["e"] != "AQAB" {
				t.Fatalf("RSA jwk %v", j)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(mustDecode(t, j["n"])), E: 65537}
		}
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := k.Method.Sign("payload", k.Signer)
		if err := k.Method.Verify("payload", sig, pub); err != nil {
			t.Errorf("%s: key from JWKS does not verify: %v", k.Alg, err)
		}
		// The kid is the thumbprint of the published JWK.
		if rebuilt, err := wrapKey(nil, pub, time.Time{}); err != nil || rebuilt.ID != k.ID {
			t.Errorf("%s: thumbprint of published key %v, %v", k.Alg, rebuilt, err)
		}
	}
	if a, b := s.JWKS(), s.JWKS(); !bytes.Equal(a, b) || &a[0] != &b[0] {
		t.Error("JWKS is not precomputed")
	}
}

func TestEphemeral(t *testing.T) {
	for _, alg := range []string{verify.ES256, verify.EdDSA} {
		s, err := Ephemeral(alg)
		if err != nil || s.Current().Alg != alg || len(s.Keys()) != 1 {
			t.Fatalf("Ephemeral(%s) = %v, %v", alg, s, err)
		}
	}
	if _, err := Ephemeral("HS256"); err == nil {
		t.Error("Ephemeral(HS256) succeeded")
	}
}

func BenchmarkGenerateES256(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(verify.ES256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePEM(b *testing.B) {
	k, _ := Generate(verify.ES256)
	data, _ := k.MarshalPEM()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePEM(data, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	k, _ := Generate(verify.ES256)
	s, _ := NewSet(k)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Lookup(k.ID); !ok {
			b.Fatal("not found")
		}
	}
}

// loadKeys is the keys of kind kd in dir, without their paths.
func loadKeys[K KeyType, S any](kd Kind[K, S], dir string) ([]K, error) {
	files, err := kd.load(dir)
	return keysOf(files), err
}

// wrapKey wraps an existing private key (signer set) or public key (pub
// only, signer nil), as the key loaders do.
func wrapKey(signer crypto.Signer, pub crypto.PublicKey, created time.Time) (*Key, error) {
	if signer != nil {
		pub = signer.Public()
	}
	return newKey(signer, pub, created)
}

// Files lists each kind's key files with their modes (a symlink's
// target's) and whether they hold a secret: a private signing key or a
// refresh key does, a public-only key does not.
func TestFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	dir := t.TempDir()
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	priv := genKey(t, verify.ES256)
	priv.Created = created
	ppath, err := Signing.WriteFile(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wrapKey(nil, genKey(t, verify.EdDSA).Public, created.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pubPath, err := Signing.WriteFile(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pubPath, 0o644); err != nil {
		t.Fatal(err)
	}
	// A refresh key reached through a symlink, as a Kubernetes secret
	// volume holds it: the target's mode counts.
	target := t.TempDir()
	rpath, err := Refresh.WriteFile(target, refreshKeyAt(created))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rpath, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, filepath.Base(rpath))
	if err := os.Symlink(rpath, link); err != nil {
		t.Fatal(err)
	}

	files, err := Signing.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []File{{Path: ppath, Mode: 0o600, Secret: true}, {Path: pubPath, Mode: 0o644, Secret: false}}
	if !slices.Equal(files, want) {
		t.Errorf("signing Files = %+v, want %+v", files, want)
	}
	files, err = Refresh.Files(dir)
	if err != nil || !slices.Equal(files, []File{{Path: link, Mode: 0o640, Secret: true}}) {
		t.Errorf("refresh Files = %+v, %v", files, err)
	}
	if _, err := Refresh.Files(filepath.Join(dir, "nope")); err == nil {
		t.Error("Files of a missing directory: no error")
	}
}
