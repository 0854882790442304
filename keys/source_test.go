package keys

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
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

var (
	tBase     = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	lifetimes = Lifetimes{Reload: 15 * time.Second, JWKSMaxAge: 4*time.Minute + 45*time.Second,
		Access: 15 * time.Minute, Refresh: 24 * time.Hour, Leeway: 30 * time.Second}
	timing        = Signing.Timing(lifetimes) // pre-publication 5m, retired for 15m30s
	refreshTiming = Refresh.Timing(lifetimes) // used after 15s, retired for 24h0m30s
)

// Each kind's schedule rule (docs/design.md, "Signing keys and rotation",
// "Refresh keys"): they differ on purpose.
func TestKindTiming(t *testing.T) {
	if want := (Timing{PrePublish: 5 * time.Minute, RetireAfter: 15*time.Minute + 30*time.Second}); timing != want {
		t.Errorf("signing timing %+v, want %+v (JWKS_MAX_AGE + reload before; access lifetime + leeway after)", timing, want)
	}
	if want := (Timing{PrePublish: 15 * time.Second, RetireAfter: 24*time.Hour + 30*time.Second}); refreshTiming != want {
		t.Errorf("refresh timing %+v, want %+v (reload before; refresh lifetime + leeway after)", refreshTiming, want)
	}
}

// keyAt makes a fresh verify.ES256 key created at t.
func keyAt(t *testing.T, created time.Time) *Key {
	t.Helper()
	k, err := Generate(verify.ES256)
	if err != nil {
		t.Fatal(err)
	}
	k.Created = created
	return k
}

func states[K any](sts []Status[K]) []State {
	out := make([]State, len(sts))
	for i, st := range sts {
		out[i] = st.State
	}
	return out
}

func TestScheduleOneKey(t *testing.T) {
	k := keyAt(t, tBase)
	for _, now := range []time.Time{tBase.Add(-time.Hour), tBase, tBase.Add(1000 * time.Hour)} {
		sts := Schedule([]*Key{k}, timing, now)
		// The first key signs at once, even if its timestamp is ahead of
		// this clock.
		if sts[0].State != StateActive || !sts[0].SignsFrom.Equal(tBase) || !sts[0].SignsUntil.IsZero() || !sts[0].DroppedAt.IsZero() {
			t.Fatalf("at %v: %+v", now, sts[0])
		}
	}
}

func TestScheduleRotation(t *testing.T) {
	k0, k1 := keyAt(t, tBase), keyAt(t, tBase.Add(24*time.Hour))
	act := k1.Created.Add(timing.PrePublish)
	drop := act.Add(timing.RetireAfter)
	ks := []*Key{k0, k1}
	cases := []struct {
		now  time.Time
		want []State
	}{
		{k1.Created.Add(-time.Second), []State{StateActive, StatePending}}, // clock behind the file
		{k1.Created, []State{StateActive, StatePending}},
		{act.Add(-time.Nanosecond), []State{StateActive, StatePending}},
		{act, []State{StateRetired, StateActive}},
		{drop.Add(-time.Nanosecond), []State{StateRetired, StateActive}},
		{drop, []State{StateExpired, StateActive}},
	}
	for _, c := range cases {
		sts := Schedule(ks, timing, c.now)
		if got := states(sts); !slices.Equal(got, c.want) {
			t.Errorf("at +%v: %v, want %v", c.now.Sub(k1.Created), got, c.want)
		}
		if !sts[0].SignsUntil.Equal(act) || !sts[0].DroppedAt.Equal(drop) || !sts[1].SignsFrom.Equal(act) || !sts[1].SignsUntil.IsZero() {
			t.Errorf("times: %+v %+v", sts[0], sts[1])
		}
	}
}

// Two rotations in quick succession: the middle key signs only between
// the two starts.
func TestScheduleQuickRotations(t *testing.T) {
	k0, k1, k2 := keyAt(t, tBase), keyAt(t, tBase.Add(time.Hour)), keyAt(t, tBase.Add(time.Hour+time.Minute))
	ks := []*Key{k0, k1, k2}
	a1, a2 := k1.Created.Add(timing.PrePublish), k2.Created.Add(timing.PrePublish)
	for _, c := range []struct {
		now  time.Time
		want []State
	}{
		{k2.Created, []State{StateActive, StatePending, StatePending}},
		{a1, []State{StateRetired, StateActive, StatePending}},
		{a2, []State{StateRetired, StateRetired, StateActive}},
		{a1.Add(timing.RetireAfter), []State{StateExpired, StateRetired, StateActive}},
		{a2.Add(timing.RetireAfter), []State{StateExpired, StateExpired, StateActive}},
	} {
		if got := states(Schedule(ks, timing, c.now)); !slices.Equal(got, c.want) {
			t.Errorf("at %v: %v, want %v", c.now, got, c.want)
		}
	}
}

func TestSchedulePublicOnly(t *testing.T) {
	k0 := keyAt(t, tBase)
	pub, err := wrapKey(nil, keyAt(t, tBase).Public, tBase.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	k1 := keyAt(t, tBase.Add(time.Hour))
	ks := []*Key{pub, k0, k1}
	sts := Schedule(ks, timing, tBase.Add(time.Hour))
	if got := states(sts); !slices.Equal(got, []State{StatePublicOnly, StateActive, StatePending}) {
		t.Fatalf("%v", got)
	}
	if !sts[0].SignsFrom.IsZero() || !sts[1].SignsFrom.Equal(tBase) {
		t.Fatalf("%+v", sts)
	}
	set, err := Signing.setOf(sts)
	if err != nil {
		t.Fatal(err)
	}
	if set.Current() != k0 || len(set.Keys()) != 3 {
		t.Fatalf("set: signing %s, %d keys", set.Current().ID, len(set.Keys()))
	}
	if set, err := Signing.setOf(Schedule([]*Key{pub}, timing, tBase)); set != nil || err != nil {
		t.Fatalf("a set of public keys only: %v %v", set, err)
	}
}

// Whatever the keys and the instant, exactly one key can sign, and every
// key that signed a token still verifiable is published.
func TestScheduleInvariants(t *testing.T) {
	pool := make([]*Key, 6)
	for i := range pool {
		pool[i] = keyAt(t, time.Time{})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + rng.IntN(len(pool))
		ks := make([]*Key, n)
		for i := range ks {
			k := *pool[i]
			k.Created = tBase.Add(time.Duration(rng.IntN(3600)) * time.Second)
			ks[i] = &k
		}
		slices.SortFunc(ks, func(a, b *Key) int { return a.Created.Compare(b.Created) })
		now := tBase.Add(time.Duration(rng.IntN(7200)) * time.Second)
		tm := Timing{PrePublish: time.Duration(rng.IntN(600)) * time.Second, RetireAfter: time.Duration(rng.IntN(1200)) * time.Second}
		sts := Schedule(ks, tm, now)
		active := 0
		for i, st := range sts {
			if st.State == StateActive {
				active++
				if i != 0 && now.Before(st.SignsFrom) {
					t.Fatalf("key %d active before it signs: %+v", i, st)
				}
			}
			if st.State == StateExpired && now.Before(st.SignsUntil.Add(tm.RetireAfter)) {
				t.Fatalf("key %d dropped early: %+v", i, st)
			}
		}
		if active != 1 {
			t.Fatalf("%d active keys: %v", active, states(sts))
		}
		if nc := nextChange(sts, now); !nc.IsZero() {
			if !nc.After(now) {
				t.Fatalf("next change %v not after %v", nc, now)
			}
			if slices.Equal(states(Schedule(ks, tm, nc.Add(-time.Nanosecond))), states(sts)) == false {
				t.Fatal("state changed before the next change")
			}
			if slices.Equal(states(Schedule(ks, tm, nc)), states(sts)) {
				t.Fatal("no state change at the next change")
			}
		}
	}
}

func TestStateString(t *testing.T) {
	want := map[State]string{StatePending: "pending", StateActive: "active", StateRetired: "retired", StateExpired: "expired", StatePublicOnly: "public-only", 0: "State(0)"}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

func jwksKids(t *testing.T, s *Set) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids
}

func sorted(ss ...string) []string { slices.Sort(ss); return ss }

func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	clk := testclock.New(tBase)
	k0 := keyAt(t, tBase.Add(-48*time.Hour))
	if _, err := Signing.WriteFile(dir, k0); err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	src, err := NewDirSource(dir, DirOptions{Lifetimes: lifetimes, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Keys().Current().ID; got != k0.ID {
		t.Fatalf("signing %s, want k0", got)
	}

	// Rotate: k1 is published at the next reload, but k0 signs on.
	k1 := keyAt(t, tBase)
	if _, err := Signing.WriteFile(dir, k1); err != nil {
		t.Fatal(err)
	}
	if kids := jwksKids(t, src.Keys()); len(kids) != 1 {
		t.Fatalf("published before reload: %v", kids)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	set := src.Keys()
	if set.Current().ID != k0.ID || !slices.Equal(jwksKids(t, set), sorted(k0.ID, k1.ID)) {
		t.Fatalf("after reload: signing %s, published %v", set.Current().ID, jwksKids(t, set))
	}
	if !strings.Contains(logs.String(), "state=pending") {
		t.Errorf("no log of the pending key:\n%s", logs.String())
	}

	// The pre-publication delay passes: k1 signs, with no reload needed.
	clk.Set(tBase.Add(timing.PrePublish))
	set = src.Keys()
	if set.Current().ID != k1.ID || !slices.Equal(jwksKids(t, set), sorted(k0.ID, k1.ID)) {
		t.Fatalf("after pre-publication: signing %s, published %v", set.Current().ID, jwksKids(t, set))
	}
	if _, ok := set.Lookup(k0.ID); !ok {
		t.Fatal("retired key not verifiable")
	}
	if sts := src.current().signing.status; !slices.Equal(states(sts), []State{StateRetired, StateActive}) {
		t.Fatalf("status %v", states(sts))
	}
	// Keys is stable between changes: the same Set, no rebuild.
	if src.Keys() != set {
		t.Fatal("set rebuilt without a change")
	}

	// k0 stays published until every token it signed has expired.
	clk.Set(tBase.Add(timing.PrePublish + timing.RetireAfter - time.Second))
	if _, ok := src.Keys().Lookup(k0.ID); !ok {
		t.Fatal("retired key dropped early")
	}
	clk.Set(tBase.Add(timing.PrePublish + timing.RetireAfter))
	if kids := jwksKids(t, src.Keys()); !slices.Equal(kids, []string{k1.ID}) {
		t.Fatalf("after retirement: published %v", kids)
	}
	if sts := src.current().signing.status; !slices.Equal(states(sts), []State{StateExpired, StateActive}) {
		t.Fatalf("status %v", states(sts))
	}

	// A bad file fails the reload and keeps the keys.
	before := src.Keys()
	bad := filepath.Join(dir, "20250601T120000Z-bad.pem")
	if err := os.WriteFile(bad, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("reload with a bad file: %v", err)
	}
	if src.Keys() != before {
		t.Fatal("a failed reload changed the keys")
	}
	os.Remove(bad)

	// Pruning removes k0's file; the next reload forgets it.
	removed, err := Signing.prune(dir, timing, clk.Now())
	if err != nil || len(removed) != 1 || !strings.Contains(removed[0], k0.ID) {
		t.Fatalf("prune: %v %v", removed, err)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if sts := src.current().signing.status; len(sts) != 1 || sts[0].Key.ID != k1.ID || sts[0].State != StateActive {
		t.Fatalf("after prune: %+v", sts)
	}

	// Deleting every key fails the reload and keeps signing.
	os.Remove(filepath.Join(dir, Signing.fileName(k1)))
	if err := src.Reload(); err == nil {
		t.Fatal("reload of an empty dir succeeded")
	}
	if src.Keys().Current().ID != k1.ID {
		t.Fatal("lost the signing key")
	}
}

func TestDirSourceErrors(t *testing.T) {
	if _, err := NewDirSource(filepath.Join(t.TempDir(), "missing"), DirOptions{}); err == nil {
		t.Fatal("missing dir accepted")
	}
	if _, err := NewDirSource(t.TempDir(), DirOptions{}); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("empty dir: %v", err)
	}
	dir := t.TempDir()
	pub, _ := wrapKey(nil, keyAt(t, tBase).Public, tBase)
	if _, err := Signing.WriteFile(dir, pub); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDirSource(dir, DirOptions{}); err == nil {
		t.Fatal("public-only dir accepted")
	}
	if _, err := NewDirSource(dir, DirOptions{Lifetimes: Lifetimes{Reload: -1}}); err == nil {
		t.Fatal("negative timing accepted")
	}
}

// Run picks up a new file by itself and stops with its context.
func TestDirSourceRun(t *testing.T) {
	dir := t.TempDir()
	k0 := keyAt(t, time.Now().Add(-time.Hour).Truncate(time.Second))
	if _, err := Signing.WriteFile(dir, k0); err != nil {
		t.Fatal(err)
	}
	src, err := NewDirSource(dir, DirOptions{Lifetimes: Lifetimes{Reload: 5 * time.Millisecond, JWKSMaxAge: time.Hour, Access: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	k1 := keyAt(t, time.Now().Truncate(time.Second))
	if _, err := Signing.WriteFile(dir, k1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := src.Keys().Lookup(k1.ID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the new key")
		}
		time.Sleep(time.Millisecond)
	}
	if src.Keys().Current().ID != k0.ID {
		t.Fatal("the new key signs at once")
	}
	cancel()
	<-done
}

// Keys is safe while state changes and reloads happen concurrently.
func TestDirSourceConcurrent(t *testing.T) {
	dir := t.TempDir()
	clk := testclock.New(tBase)
	for i := range 3 {
		if _, err := Signing.WriteFile(dir, keyAt(t, tBase.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	src, err := NewDirSource(dir, DirOptions{Lifetimes: Lifetimes{JWKSMaxAge: time.Minute, Access: time.Minute}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if s := src.Keys(); s == nil || s.Current() == nil {
					t.Error("no signing key")
					return
				}
			}
		})
	}
	for i := range 100 {
		clk.Set(tBase.Add(time.Duration(i) * 3 * time.Second))
		if i%10 == 0 {
			if err := src.Reload(); err != nil {
				t.Error(err)
			}
		}
	}
	wg.Wait()
}

// addKey generates a key for alg and adds it to dir with Signing.Add,
// pruning.
func addKey(t *testing.T, dir, alg string, now func() time.Time) (*Key, string, []string) {
	t.Helper()
	k, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	path, removed, err := Signing.Add(dir, k, timing, now, true)
	if err != nil {
		t.Fatal(err)
	}
	return k, path, removed
}

func TestAdd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // made by Add
	now := time.Date(2025, 6, 1, 12, 0, 0, 300_000_000, time.UTC)
	// Into an empty dir: the first key signs at once.
	k0, path, removed := addKey(t, dir, verify.ES256, fixed(now))
	if len(removed) != 0 || !strings.HasSuffix(path, Signing.fileName(k0)) {
		t.Fatalf("first add: %v %v", path, removed)
	}
	// The timestamp is rounded up, never down.
	if want := now.Truncate(time.Second).Add(time.Second); !k0.Created.Equal(want) {
		t.Fatalf("Created %v, want %v", k0.Created, want)
	}
	sts, err := Signing.Status(dir, timing, now)
	if err != nil || len(sts) != 1 || sts[0].State != StateActive {
		t.Fatalf("%+v %v", sts, err)
	}
	// A second key is pending for PrePublish.
	now2 := now.Add(time.Hour)
	k1, _, _ := addKey(t, dir, verify.EdDSA, fixed(now2))
	sts, _ = Signing.Status(dir, timing, now2)
	if !slices.Equal(states(sts), []State{StateActive, StatePending}) || sts[1].Key.ID != k1.ID || sts[1].SignsFrom.Before(now2.Add(timing.PrePublish)) {
		t.Fatalf("%+v", sts)
	}
	// Long after: a third key prunes k0, but keeps k1 (retired only when
	// the new key signs).
	now3 := now2.Add(24 * time.Hour)
	k2, _, removed := addKey(t, dir, verify.RS256, fixed(now3))
	if len(removed) != 1 || !strings.Contains(removed[0], k0.ID) {
		t.Fatalf("third add: removed %v", removed)
	}
	sts, _ = Signing.Status(dir, timing, now3)
	if !slices.Equal(states(sts), []State{StateActive, StatePending}) || sts[0].Key.ID != k1.ID || sts[1].Key.ID != k2.ID {
		t.Fatalf("%+v", states(sts))
	}
}

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// Keys added within one second keep their order.
func TestAddSameSecond(t *testing.T) {
	dir := t.TempDir()
	now := fixed(time.Date(2025, 6, 1, 12, 0, 0, 500_000_000, time.UTC))
	var kids []string
	for range 3 {
		k, _, _ := addKey(t, dir, verify.ES256, now)
		kids = append(kids, k.ID)
	}
	sts, err := Signing.Status(dir, timing, now())
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range sts {
		if st.Key.ID != kids[i] || !st.Key.Created.Equal(time.Date(2025, 6, 1, 12, 0, 1+i, 0, time.UTC)) {
			t.Fatalf("key %d: %s at %v, want %s", i, st.Key.ID, st.Key.Created, kids[i])
		}
	}
	if !slices.Equal(states(sts), []State{StateActive, StatePending, StatePending}) {
		t.Fatalf("%v", states(sts))
	}
}

// A directory without a kind of key it needs, or without the directory,
// fails the load with a *MissingKeysError naming the kinds missing, so
// that the caller can name the fix.
func TestDirSourceMissingKeys(t *testing.T) {
	pub, _ := wrapKey(nil, keyAt(t, tBase).Public, tBase)
	for _, c := range []struct {
		name    string
		files   []any // *Key or *RefreshKey
		noDir   bool
		require bool
		want    []string
	}{
		{"no directory", nil, true, true, []string{"signing", "refresh"}},
		{"no directory, no refresh keys needed", nil, true, false, []string{"signing"}},
		{"empty", nil, false, true, []string{"signing", "refresh"}},
		{"public-only signing key", []any{pub, refreshKeyAt(tBase)}, false, true, []string{"signing"}},
		{"signing keys only", []any{keyAt(t, tBase)}, false, true, []string{"refresh"}},
	} {
		dir := t.TempDir()
		if c.noDir {
			dir = filepath.Join(dir, "keys")
		}
		for _, f := range c.files {
			var err error
			switch k := f.(type) {
			case *Key:
				_, err = Signing.WriteFile(dir, k)
			case *RefreshKey:
				_, err = Refresh.WriteFile(dir, k)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err := NewDirSource(dir, DirOptions{RequireRefreshKeys: c.require})
		var miss *MissingKeysError
		if !errors.As(err, &miss) || miss.Dir != dir || miss.NoDir != c.noDir || !slices.Equal(miss.Kinds, c.want) {
			t.Errorf("%s: %#v", c.name, err)
			continue
		}
		for _, kind := range c.want {
			if !c.noDir && !strings.Contains(err.Error(), "no "+kind+" key (a *.") {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
	// The CLI's loaders say the same of a missing directory.
	_, err := Refresh.Status(filepath.Join(t.TempDir(), "keys"), refreshTiming, tBase)
	if miss := (*MissingKeysError)(nil); !errors.As(err, &miss) || !miss.NoDir || !slices.Equal(miss.Kinds, []string{"refresh"}) {
		t.Fatalf("Status of a missing dir: %v", err)
	}
}
