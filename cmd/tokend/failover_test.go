package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testclient"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/token"
)

// The failover runbook of docs/operations.md (a planned Sentinel failover,
// SENTINEL FAILOVER, the Redis upgrade path) while 16 frontends refresh
// their own sessions as fast as they can, through three `tokend serve`
// processes on a redis+sentinel:// URL, retrying with the same token after
// a 503 or a network error exactly as docs/integration.md says. Just
// before the failover the refresh key is rotated (`tokend keys rotate
// --only refresh`, which every replica loads within a second). A rotation
// the old master acknowledged and then lost to the promotion must not end
// a session, and neither must the new key: none ends, every token held at
// the end still refreshes (each session under the key it started with),
// and sign-ins after the rotation start with the new key.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	const frontends = 16
	master := testredis.StartServer(t)
	testredis.StartReplica(t, master)
	sentinel := testredis.StartSentinel(t, "tokend", master)
	d := deploy(t, testredis.SentinelURL("tokend", sentinel), "JWT_KEYS_RELOAD_INTERVAL=200ms")
	rts := make([]string, frontends)
	for i := range rts {
		rts[i] = d.signIn(i, d.users[i%len(d.users)])
	}
	firstKey := refreshKeyID(t, rts[0])

	var (
		ty        testclient.Tally
		stop      atomic.Bool
		phase     atomic.Int64 // 0 before the failover, 1 after it settled
		done      [2][frontends]atomic.Int64
		unavail   atomic.Int64
		netErrors atomic.Int64
		wg        sync.WaitGroup
	)
	observe := func(a testclient.Attempt) {
		switch {
		case a.Err != nil:
			netErrors.Add(1)
		case a.Status == http.StatusServiceUnavailable:
			unavail.Add(1)
		}
	}
	// However the test ends, the frontends stop before tokend does.
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
	for i := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &testclient.Client{HTTP: d.hc, ClientID: "web", Observe: observe,
				TokenURL: func(n int) string { return d.url(i+n, "/oauth/token") }}
			rt := rts[i]
			for !stop.Load() && rt != "" {
				res, err := c.Refresh(context.Background(), rt)
				rt = ty.Record(t, i, res, err)
				if rt != "" {
					done[phase.Load()][i].Add(1)
				}
			}
			rts[i] = rt
		}()
	}
	// waitFor waits until every live session has refreshed n times in
	// phase p (an ended session counts as done), or fails after 2 min.
	waitFor := func(p, n int) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ready := 0
			for i := range done[p] {
				if done[p][i].Load() >= int64(n) || ty.HasEnded(i) {
					ready++
				}
			}
			if ready == frontends {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("phase %d: %d of %d sessions refreshed %d times in 2 min", p, ready, frontends, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(0, 3)
	mustRunBin(t, d.bin, d.env, "", "keys", "rotate", "--only", "refresh")
	start := time.Now()
	from, to := sentinel.Failover("tokend")
	phase.Store(1)
	t.Logf("failover %s → %s settled in %v", from, to, time.Since(start).Round(time.Millisecond))
	waitFor(1, 3)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d answers 503, %d network errors during the load", unavail.Load(), netErrors.Load())

	// Every held token still works, at each replica, under the key its
	// session started with.
	c := &testclient.Client{HTTP: d.hc, ClientID: "web", TokenURL: func(n int) string { return d.url(n, "/oauth/token") }}
	for i, rt := range ty.Alive(t, c, rts) {
		if rt != "" && refreshKeyID(t, rt) != firstKey {
			t.Errorf("session %d moved from key %s to %s", i, firstKey, refreshKeyID(t, rt))
		}
	}
	ty.Check(t, "planned Sentinel failover and a refresh key rotation", frontends)
	// New sessions start with the new key once the replicas loaded it.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		kid := refreshKeyID(t, d.signIn(i, d.users[0]))
		if kid != firstKey {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d still signs in with the old refresh key %s 10 s after the rotation", i%3, kid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.logRotations()
}

// refreshKeyID returns the refresh key id a refresh token names.
func refreshKeyID(t *testing.T, rt string) string {
	t.Helper()
	p, err := token.ParseRefresh(rt)
	if err != nil {
		t.Fatalf("a refresh token that does not parse: %v", err)
	}
	return p.KeyID
}

// logRotations logs each replica's rotation counters by outcome (how many
// rotations were retries or recovered a lost write), where tokend exports
// them.
func (d *deployment) logRotations() {
	for i := range d.replicas {
		resp, err := d.hc.Get(d.url(i, "/metrics"))
		if err != nil {
			d.t.Logf("replica %d: /metrics: %v", i, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var lines []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "tokend_refresh_rotations_total{") || strings.HasPrefix(l, "tokend_refresh_reuse_detected_total") {
				lines = append(lines, l)
			}
		}
		d.t.Logf("replica %d: %s", i, strings.Join(lines, "; "))
	}
}
