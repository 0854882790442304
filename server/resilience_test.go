package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
)

// privateRedisStore is a store on a private redis-server that the test may
// kill and restart, through the production client (redisstore.NewClient,
// with its outage timeouts and retries).
func privateRedisStore(t *testing.T, args ...string) (*testredis.Server, store.Store) {
	t.Helper()
	srv := testredis.StartServer(t, args...)
	rdb, err := redisstore.NewClient(srv.URL())
	must(t, err)
	st, err := redisstore.New(rdb, redisstore.Options{})
	must(t, err)
	t.Cleanup(func() { st.Close() })
	return srv, st
}

// stableGoroutines returns the goroutine count once it has not changed for
// 100 ms (at most a second).
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for i, same := 0, 0; i < 100 && same < 10; i++ {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// settledGoroutines waits until the goroutine count is at most want and
// returns it, or the count and a dump of every goroutine after 5 s.
func settledGoroutines(want int) (int, string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return n, ""
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			return n, b.String()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis is killed (SIGKILL) while 16 clients refresh as fast as they can,
// stays down for a while, and comes back. Every answer is a success or a
// 503 with Retry-After — never a 500 or a panic. A refresh that got a 503
// was applied entirely or not at all: retrying the same token either
// works or is reported as reuse (the rotation ran but its answer was
// lost), never anything else. tokend recovers within 2 s of Redis
// answering again, without a restart, and leaks no goroutines.
func TestRedisKilledUnderLoad(t *testing.T) {
	const workers = 16
	srv, st := privateRedisStore(t, "--appendonly", "yes", "--appendfsync", "always")
	e := newEnv(t, st, time.Hour)
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tokens := make([]string, workers)
	for i := range tokens {
		tokens[i] = e.signIn().str("refresh_token")
	}
	http.DefaultClient.CloseIdleConnections()
	baseline := stableGoroutines()

	var (
		stop                                    atomic.Bool
		ok, unavailable, retriedOK, appliedLost atomic.Int64
		slowest503                              atomic.Int64 // ns
		wg                                      sync.WaitGroup
		mu                                      sync.Mutex
		pendingAtEnd                            = map[int]string{} // worker → token whose last answer was 503
	)
	refresh := func(rt string) (int, http.Header, map[string]any, time.Duration, error) {
		start := time.Now()
		resp, err := hc.PostForm(e.srv.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}})
		if err != nil {
			return 0, nil, nil, 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("%d answer is not JSON: %q", resp.StatusCode, body)
		}
		return resp.StatusCode, resp.Header, m, time.Since(start), nil
	}
	// judge checks one answer for the token rt; pending says an earlier
	// request with rt got a 503. It returns the next token ("" when the
	// session ended) and whether rt is now pending.
	judge := func(rt string, pending bool, status int, h http.Header, m map[string]any, d time.Duration) (string, bool) {
		switch {
		case status == http.StatusOK:
			ok.Add(1)
			if pending {
				retriedOK.Add(1)
			}
			return m["refresh_token"].(string), false
		case status == http.StatusServiceUnavailable:
			unavailable.Add(1)
			if h.Get("Retry-After") == "" || m["error"] != "temporarily_unavailable" {
				t.Errorf("503 without Retry-After or with error %v", m["error"])
			}
			for {
				old := slowest503.Load()
				if int64(d) <= old || slowest503.CompareAndSwap(old, int64(d)) {
					break
				}
			}
			return rt, true
		case status == http.StatusBadRequest && pending && m["error"] == "invalid_grant" &&
			strings.Contains(m["error_description"].(string), "already used"):
			appliedLost.Add(1) // the 503'd rotation had run: the retry is reuse
			return "", false
		default:
			t.Errorf("answer %d %v (pending 503: %v)", status, m, pending)
			return "", false
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt, pending := tokens[w], false
			for !stop.Load() && rt != "" {
				status, h, m, d, err := refresh(rt)
				if err != nil {
					t.Errorf("refresh: %v", err)
					return
				}
				rt, pending = judge(rt, pending, status, h, m, d)
				if pending {
					time.Sleep(10 * time.Millisecond) // honour Retry-After, briefly
				}
			}
			if pending {
				mu.Lock()
				pendingAtEnd[w] = rt
				mu.Unlock()
			}
		}()
	}

	time.Sleep(300 * time.Millisecond)
	before := ok.Load()
	srv.Kill()
	killed := time.Now()
	time.Sleep(700 * time.Millisecond)
	during503 := unavailable.Load()
	srv.Start()
	back := time.Now()
	atRestart := ok.Load()
	for ok.Load() == atRestart {
		if time.Since(back) > 2*time.Second {
			t.Fatalf("no successful refresh 2 s after Redis came back")
		}
		time.Sleep(time.Millisecond)
	}
	recovery := time.Since(back)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	// A token whose last answer was a 503 still works (or was reused).
	for w, rt := range pendingAtEnd {
		status, h, m, d, err := refresh(rt)
		must(t, err)
		if next, _ := judge(rt, true, status, h, m, d); next == "" && status != 400 {
			t.Errorf("worker %d: pending token answered %d", w, status)
		}
	}
	if before == 0 || during503 == 0 {
		t.Fatalf("the load did not span the outage: %d successes before, %d 503s during", before, during503)
	}
	if strings.Contains(e.logs.String(), "panic") {
		t.Fatalf("a panic was logged")
	}
	t.Logf("%d workers: %d successes, %d × 503 (slowest %v) in a %v outage; %d retries after a 503 succeeded, %d were applied before the outage answered (reuse); recovery %d ms after Redis answered PING",
		workers, ok.Load(), unavailable.Load(), time.Duration(slowest503.Load()), back.Sub(killed).Round(time.Millisecond),
		retriedOK.Load(), appliedLost.Load(), recovery.Milliseconds())
	if recovery > 2*time.Second {
		t.Fatalf("recovery took %v", recovery)
	}

	tr.CloseIdleConnections()
	if n, dump := settledGoroutines(baseline); dump != "" {
		t.Fatalf("goroutines: %d before the load, %d after it settled:\n%s", baseline, n, dump)
	}
}

// Redis with AOF (appendfsync always) is killed and restarted: every
// session is still valid and a used refresh token is still recognised as
// reuse.
func TestRedisRestartKeepsSessions(t *testing.T) {
	srv, st := privateRedisStore(t, "--appendonly", "yes", "--appendfsync", "always")
	e := newEnv(t, st, time.Hour)
	basic := []string{backendApp, e.secret}
	signIn := func() string {
		a := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, basic...)
		if a.status != 200 {
			t.Fatalf("sign in: %d %s", a.status, a.body)
		}
		return a.str("refresh_token")
	}
	refresh := func(rt string) answer {
		return e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, basic...)
	}
	const sessions = 10
	current := make([]string, sessions)
	used := make([]string, sessions) // sessions 0..4 have rotated once
	for i := range current {
		current[i] = signIn()
		if i < sessions/2 {
			used[i] = current[i]
			a := refresh(used[i])
			if a.status != 200 {
				t.Fatalf("refresh: %d %s", a.status, a.body)
			}
			current[i] = a.str("refresh_token")
		}
	}
	loggedOut := signIn()
	if a := e.post("/logout", url.Values{"refresh_token": {loggedOut}}, basic...); a.status != 204 {
		t.Fatalf("logout: %d %s", a.status, a.body)
	}

	srv.Kill()
	srv.Start()
	deadline := time.Now().Add(2 * time.Second)
	for e.get("/readyz").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("tokend did not see Redis come back within 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for i, rt := range current {
		a := e.post("/oauth/introspect", url.Values{"token": {rt}}, basic...)
		if a.status != 200 || a.json["active"] != true {
			t.Fatalf("session %d after the restart: %d %s", i, a.status, a.body)
		}
	}
	if a := e.post("/oauth/introspect", url.Values{"token": {loggedOut}}, basic...); a.json["active"] != false {
		t.Fatalf("a logged-out session came back: %s", a.body)
	}
	// The rotation record survived too: within the window the token just
	// rotated still gets the same child; after it, it is theft.
	for i := 0; i < sessions/2; i++ {
		if a := refresh(used[i]); a.status != 200 || a.str("refresh_token") != current[i] {
			t.Fatalf("retry of session %d after the restart: %d %s", i, a.status, a.body)
		}
	}
	e.clock.Advance(defaultReuseWindow)
	for i := 0; i < sessions/2; i++ {
		wantError(t, refresh(used[i]), 400, "invalid_grant", "already used")
		wantError(t, refresh(current[i]), 400, "invalid_grant", "revoked")
	}
	for i := sessions / 2; i < sessions; i++ {
		if a := refresh(current[i]); a.status != 200 {
			t.Fatalf("session %d: %d %s", i, a.status, a.body)
		}
	}
}
