package token

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/tokend/tokend/keys"
)

// swapRefreshKeys is a RefreshKeySource whose set a test replaces.
type swapRefreshKeys struct{ set *keys.RefreshSet }

func (s *swapRefreshKeys) RefreshKeys() *keys.RefreshSet { return s.set }

func newRefreshSet(t *testing.T, current *keys.RefreshKey, more ...*keys.RefreshKey) *keys.RefreshSet {
	t.Helper()
	s, err := keys.NewRing(current, more...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRefreshFormat(t *testing.T) {
	k := keys.GenerateRefreshKey()
	r := NewRefresher(StaticRefreshKeys{Set: newRefreshSet(t, k)})
	uid, sid := NewID(), NewID()
	for _, gen := range []uint64{0, 1, 9, 10, 40, 1 << 32, math.MaxUint64} {
		var tok string
		var rt Refresh
		var err error
		if gen == 0 {
			tok, rt, err = r.Mint(uid, sid, 0)
		} else {
			tok, err = r.Derive(Refresh{UserID: uid, SessionID: sid, KeyID: k.ID, Generation: 7}, gen)
			rt = Refresh{UserID: uid, SessionID: sid, Generation: gen, KeyID: k.ID}
		}
		if err != nil {
			t.Fatal(err)
		}
		g := strconv.FormatUint(gen, 10)
		prefix := "rt_" + uid + "_" + sid + "_" + g + "_" + k.ID + "_"
		if !strings.HasPrefix(tok, prefix) || len(tok) != len(prefix)+43 {
			t.Fatalf("gen %d: %q", gen, tok)
		}
		if len(tok) < MinRefreshLen || len(tok) > MaxRefreshLen || url.QueryEscape(tok) != tok || strings.Contains(tok, ".") {
			t.Fatalf("gen %d: %q is not URL-safe or out of bounds", gen, tok)
		}
		// The MAC is exactly the documented HMAC.
		msg := []byte("tokend-refresh-v1\x00" + uid + "\x00" + sid + "\x00")
		msg = binary.BigEndian.AppendUint64(msg, gen)
		if want := base64.RawURLEncoding.EncodeToString(k.MAC(nil, msg)); tok[len(prefix):] != want {
			t.Fatalf("gen %d: MAC %s, want %s", gen, tok[len(prefix):], want)
		}
		mac, _ := base64.RawURLEncoding.DecodeString(tok[len(prefix):])
		if len(mac)*8 != 256 {
			t.Fatalf("MAC of %d bits", len(mac)*8)
		}
		got, err := r.Verify(tok)
		if err != nil || got != rt {
			t.Fatalf("gen %d: verify %+v %v, want %+v", gen, got, err, rt)
		}
		if p, err := ParseRefresh(tok); err != nil || p != rt {
			t.Fatalf("gen %d: parse %+v %v", gen, p, err)
		}
	}
	// Deterministic: the same session and generation give the same token.
	a, rt, _ := r.Mint(uid, sid, 3)
	if b, _ := r.Derive(rt, 3); a != b {
		t.Fatal("Derive differs from Mint for the same generation")
	}
	if c, _ := r.Derive(rt, 4); c == a {
		t.Fatal("two generations share a token")
	}
	if _, err := r.Derive(Refresh{UserID: uid, SessionID: sid, KeyID: "aaaaaaaa"}, 1); !errors.Is(err, ErrNotGenuine) {
		t.Fatalf("Derive with an unknown key: %v", err)
	}
}

// Every change to a genuine token is refused: a change of shape as
// malformed, a change of content as not genuine — including a MAC that
// is right for another session, generation or key.
func TestRefreshTampering(t *testing.T) {
	k, other := keys.GenerateRefreshKey(), keys.GenerateRefreshKey()
	r := NewRefresher(StaticRefreshKeys{Set: newRefreshSet(t, k, other)})
	uid, sid := NewID(), NewID()
	tok, rt, _ := r.Mint(uid, sid, 41)
	macOf := func(s string) string { return s[len(s)-43:] }
	withMAC := func(s, mac string) string { return s[:len(s)-43] + mac }
	sib, _ := r.Derive(Refresh{UserID: uid, SessionID: NewID(), KeyID: k.ID}, 41)
	gen40, _ := r.Derive(rt, 40)
	otherKey, _ := r.Derive(Refresh{UserID: uid, SessionID: sid, KeyID: other.ID}, 41)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	notGenuine := map[string]string{
		"other user":          strings.Replace(tok, uid, NewID(), 1),
		"other session":       strings.Replace(tok, sid, NewID(), 1),
		"other generation":    strings.Replace(tok, "_41_", "_42_", 1),
		"earlier generation":  withMAC(strings.Replace(tok, "_41_", "_40_", 1), macOf(tok)),
		"other key's kid":     strings.Replace(tok, "_"+k.ID+"_", "_"+other.ID+"_", 1),
		"unknown kid":         strings.Replace(tok, "_"+k.ID+"_", "_aaaaaaaa_", 1),
		"sibling session MAC": withMAC(tok, macOf(sib)),
		"gen 40 MAC":          withMAC(tok, macOf(gen40)),
		"other key's MAC":     withMAC(tok, macOf(otherKey)),
		"first MAC char":      flip(tok, len(tok)-43),
		"zero MAC":            withMAC(tok, strings.Repeat("A", 43)),
	}
	for name, s := range notGenuine {
		if _, err := r.Verify(s); !errors.Is(err, ErrNotGenuine) {
			t.Errorf("%s: %v", name, err)
		}
	}
	last := tok[len(tok)-1]
	// The last MAC character carries 2 padding bits; another character
	// with the same 4 leading bits decodes to the same bytes and must be
	// refused as a second spelling.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	pos := strings.IndexByte(alphabet, last)
	twin := tok[:len(tok)-1] + string(alphabet[pos^1])
	malformed := map[string]string{
		"empty":             "",
		"prefix":            "xt_" + tok[3:],
		"uppercase id":      strings.Replace(tok, uid, strings.ToUpper(uid), 1),
		"id padding bits":   strings.Replace(tok, uid, uid[:25]+"7", 1),
		"leading zero":      strings.Replace(tok, "_41_", "_041_", 1),
		"plus sign":         strings.Replace(tok, "_41_", "_+41_", 1),
		"empty generation":  strings.Replace(tok, "_41_", "__", 1),
		"overflow":          strings.Replace(tok, "_41_", "_18446744073709551616_", 1),
		"21 digits":         strings.Replace(tok, "_41_", "_100000000000000000000_", 1),
		"hex generation":    strings.Replace(tok, "_41_", "_4f_", 1),
		"short kid":         strings.Replace(tok, "_"+k.ID+"_", "_"+k.ID[:7]+"_", 1),
		"padded MAC":        tok + "=",
		"MAC padding bits":  twin,
		"MAC not base64url": withMAC(tok, strings.Repeat("+", 43)),
		"truncated":         tok[:len(tok)-1],
		"separator":         strings.Replace(tok, "_"+sid, "-"+sid, 1),
		"JWT":               "eyJhbGciOiJFUzI1NiJ9.e30.sig",
	}
	for name, s := range malformed {
		if _, err := r.Verify(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: verify %v", name, err)
		}
		if _, err := ParseRefresh(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: parse %v", name, err)
		}
	}
	if _, err := r.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

// A session keeps the key it started with: after a rotation of the
// refresh keys, its next generations are still derived with the old key,
// and new sessions use the new one. When the old key is gone, its tokens
// no longer verify.
func TestRefreshKeyRotation(t *testing.T) {
	k0, k1 := keys.GenerateRefreshKey(), keys.GenerateRefreshKey()
	src := &swapRefreshKeys{set: newRefreshSet(t, k0)}
	r := NewRefresher(src)
	old, rt, _ := r.Mint(NewID(), NewID(), 0)
	src.set = newRefreshSet(t, k1, k0) // k1 current, k0 still held
	if _, err := r.Verify(old); err != nil {
		t.Fatal(err)
	}
	next, err := r.Derive(rt, 1)
	if err != nil || !strings.Contains(next, "_"+k0.ID+"_") {
		t.Fatalf("child under %q: %v", next, err)
	}
	fresh, frt, _ := r.Mint(NewID(), NewID(), 0)
	if frt.KeyID != k1.ID || !strings.Contains(fresh, "_"+k1.ID+"_") {
		t.Fatalf("new session under %s", frt.KeyID)
	}
	src.set = newRefreshSet(t, k1) // k0 dropped
	if _, err := r.Verify(next); !errors.Is(err, ErrNotGenuine) {
		t.Fatalf("token of a dropped key: %v", err)
	}
	if _, err := r.Verify(fresh); err != nil {
		t.Fatal(err)
	}
	src.set = nil
	if _, _, err := r.Mint(NewID(), NewID(), 0); !errors.Is(err, ErrNoRefreshKey) {
		t.Fatalf("mint without keys: %v", err)
	}
	if _, err := r.Verify(fresh); !errors.Is(err, ErrNotGenuine) {
		t.Fatalf("verify without keys: %v", err)
	}
}

// Verify is one HMAC and allocates nothing.
func TestVerifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := NewRefresher(StaticRefreshKeys{Set: keys.EphemeralRefresh()})
	tok, _, _ := r.Mint(NewID(), NewID(), 12345)
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Verify(tok) }); n > 0 {
		t.Errorf("Verify allocates %v times", n)
	}
}

func BenchmarkRefreshVerify(b *testing.B) {
	r := NewRefresher(StaticRefreshKeys{Set: keys.EphemeralRefresh()})
	tok, _, _ := r.Mint(NewID(), NewID(), 12345)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRefreshDerive(b *testing.B) {
	r := NewRefresher(StaticRefreshKeys{Set: keys.EphemeralRefresh()})
	_, rt, _ := r.Mint(NewID(), NewID(), 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Derive(rt, 12346); err != nil {
			b.Fatal(err)
		}
	}
}
