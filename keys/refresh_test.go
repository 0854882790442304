package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/verify"
)

func refreshKeyAt(created time.Time) *RefreshKey {
	k := GenerateRefreshKey()
	k.Created = created
	return k
}

func TestRefreshKeyPEMRoundTrip(t *testing.T) {
	k := GenerateRefreshKey()
	if len(k.ID) != RefreshKeyIDLen || strings.Trim(k.ID, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("kid %q", k.ID)
	}
	back, err := ParseRefreshPEM(k.MarshalPEM(), k.Created)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != k.ID || back.secret != k.secret {
		t.Fatal("round trip changed the key")
	}
	// The MAC is HMAC-SHA256 under the secret, the same from every copy
	// and from concurrent callers.
	msg := []byte("tokend-refresh-v1\x00message")
	m := hmac.New(sha256.New, k.secret[:])
	m.Write(msg)
	want := m.Sum(nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got := back.MAC(nil, msg); !bytes.Equal(got, want) {
					t.Error("MAC differs from HMAC-SHA256")
					return
				}
			}
		})
	}
	wg.Wait()
	if other := GenerateRefreshKey(); other.ID == k.ID || bytes.Equal(other.MAC(nil, msg), want) {
		t.Fatal("two generated keys agree")
	}
}

// Derive is HMAC-SHA256 under the secret of a fixed label: the same from
// every copy of a key, different for another label or another key, and
// the kid is made from it.
func TestRefreshKeyDerive(t *testing.T) {
	k := GenerateRefreshKey()
	m := hmac.New(sha256.New, k.secret[:])
	m.Write([]byte("tokend-dpop-nonce-v1"))
	want := m.Sum(nil)
	copyOf, err := ParseRefreshPEM(k.MarshalPEM(), k.Created)
	if err != nil {
		t.Fatal(err)
	}
	got := copyOf.Derive("tokend-dpop-nonce-v1")
	if !bytes.Equal(got, want) || len(got) != 32 {
		t.Fatalf("Derive %x, want HMAC-SHA256 %x", got, want)
	}
	got[0]++ // the result is the caller's
	if !bytes.Equal(k.Derive("tokend-dpop-nonce-v1"), want) {
		t.Fatal("a caller changed the next result")
	}
	if bytes.Equal(k.Derive("another label"), want) || bytes.Equal(GenerateRefreshKey().Derive("tokend-dpop-nonce-v1"), want) {
		t.Fatal("another label or key derives the same")
	}
	if k.ID != kidEncoding.EncodeToString(k.Derive(refreshKIDLabel)[:5]) {
		t.Fatal("the kid is not derived from the key")
	}
}

func TestParseRefreshPEMRefuses(t *testing.T) {
	k := GenerateRefreshKey()
	good := k.MarshalPEM()
	block := func(typ string, b []byte, h map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b, Headers: h})
	}
	cases := map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("secret"),
		"wrong type":  block("PRIVATE KEY", k.secret[:], nil),
		"short":       block(refreshPEMType, k.secret[:31], nil),
		"long":        block(refreshPEMType, append(k.secret[:], 0), nil),
		"headers":     block(refreshPEMType, k.secret[:], map[string]string{"Proc-Type": "4,ENCRYPTED"}),
		"two blocks":  append(slices.Clone(good), good...),
		"signing key": mustPEM(t, genKey(t, verify.ES256)),
	}
	for name, data := range cases {
		if _, err := ParseRefreshPEM(data, tBase); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustPEM(t *testing.T, k *Key) []byte {
	t.Helper()
	b, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The secret is never printed, whatever the verb or logger.
func TestRefreshKeyNeverPrintsSecret(t *testing.T) {
	k := GenerateRefreshKey()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", slog.Any("key", k), slog.Any("set", EphemeralRefresh()))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("key", slog.Any("key", k))
	out := fmt.Sprintf("%v %+v %#v %s", k, k, k, k) + fmt.Sprintf("%v %+v %#v", *k, *k, []*RefreshKey{k}) + logs.String()
	secretPEM := strings.Join(strings.Split(string(k.MarshalPEM()), "\n")[1:2], "")
	for _, leak := range []string{fmt.Sprint(k.secret[:]), fmt.Sprintf("%x", k.secret[:]), secretPEM[:20]} {
		if strings.Contains(out, leak) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if !strings.Contains(out, k.ID) {
		t.Fatalf("kid not printed: %s", out)
	}
}

// Refresh key files sit beside signing keys; each loader reads only its own.
func TestRefreshKeyFiles(t *testing.T) {
	dir := t.TempDir()
	sk := keyAt(t, tBase)
	if _, err := Signing.WriteFile(dir, sk); err != nil {
		t.Fatal(err)
	}
	rk := refreshKeyAt(tBase)
	path, err := Refresh.WriteFile(dir, rk)
	if err != nil || filepath.Base(path) != tBase.Format(fileTimeLayout)+"-"+rk.ID+".refresh" {
		t.Fatalf("%s %v", path, err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", info.Mode(), err)
	}
	if _, err := Refresh.WriteFile(dir, rk); err == nil {
		t.Fatal("overwrote an existing file")
	}
	signing, err := loadKeys(Signing, dir)
	if err != nil || len(signing) != 1 || signing[0].ID != sk.ID {
		t.Fatalf("signing loader: %v %v", signing, err)
	}
	rks, err := loadKeys(Refresh, dir)
	if err != nil || len(rks) != 1 || rks[0].ID != rk.ID || rks[0].secret != rk.secret || !rks[0].Created.Equal(tBase) {
		t.Fatalf("refresh loader: %v %v", rks, err)
	}

	// A file whose name does not match its key, a bad name, bad content:
	// each fails the load, naming the file.
	other := GenerateRefreshKey()
	for name, data := range map[string][]byte{
		"20250601T120000Z-" + strings.Repeat("a", RefreshKeyIDLen) + ".refresh": other.MarshalPEM(),
		"20250601T120000Z-" + other.ID + ".refresh":                             []byte("garbage"),
		"20250601-" + other.ID + ".refresh":                                     other.MarshalPEM(),
		"20250601T120000Z-" + other.ID + "x.refresh":                            other.MarshalPEM(),
	} {
		bad := filepath.Join(dir, name)
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadKeys(Refresh, dir); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v", name, err)
		}
		os.Remove(bad)
	}
	// Dot files (temporaries) are skipped.
	if err := os.WriteFile(filepath.Join(dir, ".x.refresh"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(Refresh, dir); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshSchedule(t *testing.T) {
	k0, k1 := refreshKeyAt(tBase), refreshKeyAt(tBase.Add(time.Hour))
	use := k1.Created.Add(refreshTiming.PrePublish)
	drop := use.Add(refreshTiming.RetireAfter)
	for _, c := range []struct {
		now  time.Time
		want []State
	}{
		{k1.Created, []State{StateActive, StatePending}},
		{use.Add(-time.Nanosecond), []State{StateActive, StatePending}},
		{use, []State{StateRetired, StateActive}},
		{drop.Add(-time.Nanosecond), []State{StateRetired, StateActive}},
		{drop, []State{StateExpired, StateActive}},
	} {
		sts := Schedule([]*RefreshKey{k0, k1}, refreshTiming, c.now)
		var got []State
		for _, st := range sts {
			got = append(got, st.State)
		}
		if !slices.Equal(got, c.want) || !sts[0].DroppedAt.Equal(drop) || !sts[1].SignsFrom.Equal(use) {
			t.Errorf("at +%v: %v (%+v), want %v", c.now.Sub(k1.Created), got, sts, c.want)
		}
		set, err := Refresh.setOf(sts)
		if err != nil {
			t.Fatal(err)
		}
		active := k0
		if c.want[1] == StateActive {
			active = k1
		}
		if set.Current() != active {
			t.Errorf("at +%v: current %s", c.now.Sub(k1.Created), set.Current().ID)
		}
		// Pending keys already verify (a replica with a faster clock may
		// use one first); expired ones do not.
		_, ok0 := set.Lookup(k0.ID)
		_, ok1 := set.Lookup(k1.ID)
		if ok0 != (c.want[0] != StateExpired) || !ok1 {
			t.Errorf("at +%v: lookup k0 %v k1 %v", c.now.Sub(k1.Created), ok0, ok1)
		}
	}
	if set, err := Refresh.setOf(nil); set != nil || err != nil {
		t.Fatalf("a set of no keys: %v %v", set, err)
	}
}

// DirSource follows refresh keys like signing keys: a new one verifies at
// the next reload and is used for new sessions after the pre-publication
// delay; the old one verifies until RetireAfter later.
func TestDirSourceRefreshKeys(t *testing.T) {
	dir := t.TempDir()
	clk := testclock.New(tBase)
	if _, err := Signing.WriteFile(dir, keyAt(t, tBase.Add(-48*time.Hour))); err != nil {
		t.Fatal(err)
	}
	opts := DirOptions{Lifetimes: lifetimes, Now: clk.Now, RequireRefreshKeys: true}
	if _, err := NewDirSource(dir, opts); err == nil || !strings.Contains(err.Error(), "no refresh key") {
		t.Fatalf("no refresh key: %v", err)
	}
	k0 := refreshKeyAt(tBase.Add(-48 * time.Hour))
	if _, err := Refresh.WriteFile(dir, k0); err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	src, err := NewDirSource(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if src.RefreshKeys().Current() != nil && src.RefreshKeys().Current().ID != k0.ID {
		t.Fatalf("current %s", src.RefreshKeys().Current().ID)
	}

	k1 := refreshKeyAt(tBase)
	if _, err := Refresh.WriteFile(dir, k1); err != nil {
		t.Fatal(err)
	}
	if _, ok := src.RefreshKeys().Lookup(k1.ID); ok {
		t.Fatal("known before reload")
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	set := src.RefreshKeys()
	if _, ok := set.Lookup(k1.ID); !ok || set.Current().ID != k0.ID {
		t.Fatalf("after reload: current %s", set.Current().ID)
	}
	clk.Set(tBase.Add(refreshTiming.PrePublish))
	set = src.RefreshKeys()
	if _, ok := set.Lookup(k0.ID); !ok || set.Current().ID != k1.ID {
		t.Fatalf("after pre-publication: current %s", set.Current().ID)
	}
	if src.RefreshKeys() != set {
		t.Fatal("set rebuilt without a change")
	}
	clk.Set(tBase.Add(refreshTiming.PrePublish + refreshTiming.RetireAfter))
	if _, ok := src.RefreshKeys().Lookup(k0.ID); ok {
		t.Fatal("k0 usable after it expired")
	}
	sts := src.current().refresh.status
	if len(sts) != 2 || sts[0].State != StateExpired || sts[1].State != StateActive {
		t.Fatalf("status %+v", sts)
	}
	if !strings.Contains(logs.String(), "kid="+k1.ID) || !strings.Contains(logs.String(), "new sessions use refresh key") {
		t.Fatalf("logs:\n%s", logs.String())
	}

	// Removing every refresh key fails the reload and keeps the keys.
	removed, err := Refresh.prune(dir, refreshTiming, clk.Now())
	if err != nil || len(removed) != 1 || !strings.Contains(removed[0], k0.ID) {
		t.Fatalf("prune: %v %v", removed, err)
	}
	if err := os.Remove(filepath.Join(dir, Refresh.fileName(k1))); err != nil {
		t.Fatal(err)
	}
	before := src.RefreshKeys()
	if err := src.Reload(); err == nil {
		t.Fatal("reload without refresh keys succeeded")
	}
	if src.RefreshKeys() != before {
		t.Fatal("failed reload changed the keys")
	}

	// Without RequireRefreshKeys a directory of signing keys is fine.
	plain, err := NewDirSource(dir, DirOptions{Lifetimes: lifetimes, Now: clk.Now})
	if err != nil || plain.RefreshKeys() != nil {
		t.Fatalf("%v %v", plain.RefreshKeys(), err)
	}
}

func TestAddRefresh(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 6, 1, 12, 0, 0, 300_000_000, time.UTC)
	add := func(now time.Time) (*RefreshKey, string, []string) {
		t.Helper()
		k := GenerateRefreshKey()
		path, removed, err := Refresh.Add(dir, k, refreshTiming, fixed(now), true)
		if err != nil {
			t.Fatal(err)
		}
		return k, path, removed
	}
	k0, path, removed := add(now)
	if len(removed) != 0 || filepath.Base(path) != Refresh.fileName(k0) || !k0.Created.Equal(now.Truncate(time.Second).Add(time.Second)) {
		t.Fatalf("first: %v %v %v", k0.Created, path, removed)
	}
	if k1, _, _ := add(now); !k1.Created.Equal(k0.Created.Add(time.Second)) { // same second
		t.Fatalf("second: %v", k1.Created)
	}
	sts, err := Refresh.Status(dir, refreshTiming, now)
	if err != nil || len(sts) != 2 || sts[0].State != StateActive || sts[1].State != StatePending {
		t.Fatalf("%+v %v", sts, err)
	}
	// Long after, a third key prunes k0 (k1 replaced it long ago).
	later := now.Add(refreshTiming.PrePublish + refreshTiming.RetireAfter + time.Minute)
	if _, _, removed := add(later); len(removed) != 1 || !strings.Contains(removed[0], k0.ID) {
		t.Fatalf("third: %v", removed)
	}
	// Signing keys are left alone by refresh pruning and vice versa.
	if _, err := Signing.WriteFile(dir, keyAt(t, tBase)); err != nil {
		t.Fatal(err)
	}
	if _, err := Signing.prune(dir, timing, later.Add(1000*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rks, _ := loadKeys(Refresh, dir); len(rks) != 2 {
		t.Fatalf("%d refresh keys left", len(rks))
	}
}
