package verify

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

func newTestRevocations(max int, now func() time.Time) *revocations {
	return newRevocations(Revocations{ClientID: "c", ClientSecret: "s", MaxEntries: max}, func(context.Context) (string, error) { return "http://x/events", nil }, slog.New(discardHandler{}), now, 30*time.Second)
}

func sessionFrame(i int, until int64) []byte {
	// A session id as tokend makes them: 26 base32 characters.
	return []byte(fmt.Sprintf(`{"tokend":{"kind":"session","sub":"u","sid":"%026d","until":%d}}`, i, until))
}

// Entries leave when the tokens they cover have expired; beyond
// MaxEntries the soonest to expire leave first, counted.
func TestRevocationsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := newTestRevocations(3, func() time.Time { return now })
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		r.apply(ctx, fmt.Sprintf("1-%d", i+1), "session-revoked", sessionFrame(i, now.Unix()+int64(100*(i+1))))
	}
	r.apply(ctx, "1-4", "session-revoked", sessionFrame(3, now.Unix()+1000))
	if st := r.stats(); st.Sessions != 3 || st.Dropped != 1 {
		t.Fatalf("over the bound: %+v", st)
	}
	if _, ok := r.sessions[fmt.Sprintf("%026d", 0)]; ok {
		t.Fatal("the session expiring soonest was kept")
	}
	// 250 s later (with 30 s leeway): sessions 1 (until +200) leaves.
	now = now.Add(250 * time.Second)
	r.sweep()
	if st := r.stats(); st.Sessions != 2 {
		t.Fatalf("after expiry: %+v", st)
	}
}

// The verifier's memory per retained revocation (a revoked session): run
// with go test -run TestRevocationMemory -v ./verify.
func TestRevocationMemory(t *testing.T) {
	const n = 100_000
	r := newTestRevocations(0, time.Now)
	until := time.Now().Add(time.Hour).Unix()
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = sessionFrame(i, until)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, f := range frames {
		r.apply(context.Background(), "", "session-revoked", f)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(r.sessions) != n {
		t.Fatalf("%d sessions kept, want %d", len(r.sessions), n)
	}
	t.Logf("verifier memory per retained revoked session: %.0f bytes (%d sessions, heap +%d bytes)",
		float64(after.HeapAlloc-before.HeapAlloc)/n, n, after.HeapAlloc-before.HeapAlloc)
	runtime.KeepAlive(frames)
}

// BenchmarkRevocationCheck: the cost the feed adds to Verify is
// three map lookups under a read lock.
func BenchmarkRevocationCheck(b *testing.B) {
	r := newTestRevocations(0, time.Now)
	until := time.Now().Add(time.Hour).Unix()
	for i := 0; i < 10_000; i++ {
		r.apply(context.Background(), "", "session-revoked", sessionFrame(i, until))
	}
	c := &Claims{Subject: "u", ClientID: "web", SessionID: "live-session-id-0000000000", IssuedAt: time.Now()}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.check(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
