package server_test

// Fault injection (docs/design.md, "Fault injection"): 16 frontends, each with its own session,
// refresh exactly as docs/integration.md tells them to (the same token
// again after a 503, a 429 or a network error; only invalid_grant sends
// the person to sign in) while an answer is lost, a Redis reply is lost,
// or Redis stalls. No session may end: a retry either gets the child the
// first attempt made or rotates once (docs/design.md, rotation). Every test
// counts the sessions that ended and reports the count when it fails, the
// figure of the table in docs/design.md, "Fault injection".

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/faultproxy"
	"github.com/tokend/tokend/internal/testclient"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/clientcache"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

// frontends is how many sessions each fault test keeps alive.
const frontends = 16

// storeAt is a store on the Redis at redisURL as `tokend serve` builds
// it: the production client (redisstore.NewClient: its timeouts and
// retries, which the URL may override, e.g. ?read_timeout=300ms) and the
// client cache, so that a refresh's only Redis command is the rotation.
func storeAt(t *testing.T, redisURL string) store.Store {
	t.Helper()
	rdb, err := redisstore.NewClient(redisURL)
	must(t, err)
	st, err := redisstore.New(rdb, redisstore.Options{ServerClock: true})
	must(t, err)
	t.Cleanup(func() { st.Close() })
	return clientcache.Wrap(st, time.Hour)
}

// frontend is a documented client of e over hc. Retry-After is honoured
// as sent (1 s).
func (e *env) frontend(hc *http.Client, observe func(testclient.Attempt)) *testclient.Client {
	return &testclient.Client{
		HTTP: hc, ClientID: publicApp, Observe: observe,
		TokenURL: func(int) string { return e.srv.URL + "/oauth/token" },
	}
}

// sessions signs in n times and returns the refresh tokens.
func (e *env) sessions(n int) []string {
	e.t.Helper()
	rts := make([]string, n)
	for i := range rts {
		rts[i] = e.signIn().str("refresh_token")
	}
	return rts
}

// warm brings tokend and Redis to where a running tokend under load is:
// Redis has the rotation script cached (otherwise the first rotation under
// the fault is EVALSHA's NOSCRIPT error, which does nothing) and tokend's
// Redis client has a pooled connection for each of 16 concurrent requests
// (otherwise requests under a stall wait on new connections' handshakes
// and never send their rotation). It refreshes 16 sessions of its own at
// once.
func (e *env) warm() {
	e.t.Helper()
	rts := e.sessions(frontends)
	c := e.frontend(http.DefaultClient, nil)
	var ty testclient.Tally
	var wg sync.WaitGroup
	for i, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Refresh(context.Background(), rt)
			ty.Record(e.t, i, res, err)
		}()
	}
	wg.Wait()
	if n := ty.Ended(); n > 0 {
		e.t.Fatalf("warm-up: %d sessions ended", n)
	}
}

// An answer lost on its way back to the frontend (after tokend rotated):
// the frontend retries with the same token and gets the very refresh
// token the lost answer carried, and its session goes on. Every fourth
// successful answer is lost; 16 sessions refresh 12 times each.
func TestRefreshAnswerLost(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	rts := e.sessions(frontends)
	const rounds = 12
	var ty testclient.Tally
	var lostTotal, sameToken atomic.Int64
	var wg sync.WaitGroup
	for i := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			lossy := &testclient.LossyTransport{Lose: func(_ *http.Request, status int, _ []byte) bool {
				if status != http.StatusOK {
					return false
				}
				n++
				return (n+i)%4 == 0
			}}
			hc := &http.Client{Transport: lossy, Timeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			c := e.frontend(hc, nil)
			rt := rts[i]
			for r := 0; r < rounds && rt != ""; r++ {
				before := len(lossy.Lost())
				res, err := c.Refresh(context.Background(), rt)
				lost := lossy.Lost()[before:]
				lostTotal.Add(int64(len(lost)))
				next := ty.Record(t, i, res, err)
				for _, body := range lost {
					var m struct {
						RT string `json:"refresh_token"`
					}
					_ = json.Unmarshal(body, &m)
					if next != "" && m.RT != next {
						t.Errorf("session %d: the retry after a lost answer got another refresh token than the lost answer", i)
					} else if next != "" {
						sameToken.Add(1)
					}
				}
				rt = next
			}
			rts[i] = rt
		}()
	}
	wg.Wait()
	if lostTotal.Load() == 0 {
		t.Fatal("no answer was lost")
	}
	ty.Alive(t, e.frontend(http.DefaultClient, nil), rts)
	t.Logf("%d answers lost; %d retries brought the lost answer's refresh token", lostTotal.Load(), sameToken.Load())
	ty.Check(t, fmt.Sprintf("%d lost answers", lostTotal.Load()), frontends)
}

// The reply of Redis to the rotation script is lost (the proxy breaks
// the connection, or holds the reply until tokend's client times out):
// Redis ran the script, tokend answers 503, the frontend retries with the
// same token, and the session goes on.
func TestRedisReplyLost(t *testing.T) {
	for _, action := range []faultproxy.Action{faultproxy.Cut, faultproxy.Hold} {
		t.Run(action.String(), func(t *testing.T) {
			srv := testredis.StartServer(t)
			proxy := faultproxy.Start(t, srv.Addr)
			e := newEnv(t, storeAt(t, proxy.URL()+"?read_timeout=300ms"), time.Hour)
			rts := e.sessions(frontends)
			e.warm()
			// Every session's first refresh loses its script replies: 503.
			proxy.SetRule(faultproxy.Scripts(action))
			var wg sync.WaitGroup
			statuses := make([]int, len(rts))
			for i, rt := range rts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}})
					statuses[i] = a.status
				}()
			}
			wg.Wait()
			proxy.PassAll()
			byCmd, lost := proxy.Lost()
			for i, s := range statuses {
				if s != http.StatusServiceUnavailable {
					t.Fatalf("session %d: %d while Redis replies were lost, want 503 (lost %v)", i, s, byCmd)
				}
			}
			if lost < frontends {
				t.Fatalf("only %d Redis replies lost (%v)", lost, byCmd)
			}
			var ty testclient.Tally
			c := e.frontend(http.DefaultClient, nil)
			for i, rt := range rts {
				res, err := c.Refresh(context.Background(), rt)
				rts[i] = ty.Record(t, i, res, err)
			}
			ty.Alive(t, c, rts)
			ty.Check(t, fmt.Sprintf("%d Redis replies lost (%v)", lost, action), frontends)
		})
	}
}

// A third of Redis's replies to scripts are lost (the proxy breaks the
// connection) while 16 frontends refresh 30 times each: tokend's client
// resends the script (the same request, answered as the original), and
// when every resend is lost too tokend answers 503 and the frontend
// retries. No session ends.
func TestRedisRepliesLostUnderLoad(t *testing.T) {
	srv := testredis.StartServer(t)
	proxy := faultproxy.Start(t, srv.Addr)
	e := newEnv(t, storeAt(t, proxy.URL()), time.Hour)
	rts := e.sessions(frontends)
	e.warm()
	var unavailable atomic.Int64
	c := e.frontend(http.DefaultClient, func(a testclient.Attempt) {
		if a.Status == http.StatusServiceUnavailable {
			unavailable.Add(1)
		}
	})
	var ty testclient.Tally
	cutScriptReplies(proxy, c)
	refreshAll(t, c, &ty, rts, 30, func(int) {})()
	proxy.PassAll()
	byCmd, lost := proxy.Lost()
	if unavailable.Load() == 0 {
		t.Fatalf("no refresh was answered 503 (%d Redis replies lost: %v)", lost, byCmd)
	}
	ty.Alive(t, c, rts)
	ty.Check(t, fmt.Sprintf("%d Redis replies lost, %d answers 503", lost, unavailable.Load()), frontends)
}

// cutScriptReplies loses a third of Redis's replies to scripts (the proxy
// breaks the connection): tokend's client resends, and answers 503 when
// every resend is lost too. c retries at once: Redis is up.
func cutScriptReplies(proxy *faultproxy.Proxy, c *testclient.Client) {
	c.Sleep = func(context.Context, time.Duration) error { return nil }
	proxy.SetRule(faultproxy.Fraction(1.0/3, 9, faultproxy.Cut, faultproxy.Scripts(faultproxy.Cut)))
}

// refreshAll starts every frontend refreshing its session (rts[i]) rounds
// times at once, calling done(i) after each refresh of session i, and
// returns the wait for them to finish, after which rts holds the tokens
// held last ("" for a session that ended).
func refreshAll(t *testing.T, c *testclient.Client, ty *testclient.Tally, rts []string, rounds int, done func(i int)) (wait func()) {
	var wg sync.WaitGroup
	for i := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := rts[i]
			for r := 0; r < rounds && rt != ""; r++ {
				res, err := c.Refresh(context.Background(), rt)
				rt = ty.Record(t, i, res, err)
				done(i)
			}
			rts[i] = rt
		}()
	}
	return wg.Wait
}

// Redis stops (SIGSTOP) while 16 frontends refresh: the scripts tokend
// sent queue in Redis's sockets and run when it continues (SIGCONT). In
// "503" tokend's Redis timeout (300 ms here) is shorter than the stall:
// it answers 503 and the frontends retry after Retry-After. In
// "client-timeout" the frontends' own timeout (300 ms) is shorter: they
// give up on the request and retry while the first is still queued. In
// "longer-than-window" the stall lasts longer than REFRESH_REUSE_WINDOW
// (6 s of real time against a 5 s window; tokend on the real clock, as in
// production): the queued rotations run when Redis resumes and are dated
// then (redisstore.Options.ServerClock), so the frontends' retries right
// after that are retries of a rotation that has just happened, not theft
// ("a 503 is always safe to retry": docs/design.md, "Redis outages"). Redis resumes once every
// frontend has seen the fault; every session goes on.
func TestRedisStalled(t *testing.T) {
	cases := []struct {
		name        string
		redisQuery  string
		httpTimeout time.Duration
		fault       func(testclient.Attempt) bool
		// stall, if not zero, is how long Redis stays stopped after every
		// frontend has seen the fault, with tokend on the real clock and
		// REFRESH_REUSE_WINDOW = window.
		stall, window time.Duration
	}{
		{"503", "?read_timeout=300ms", 10 * time.Second,
			func(a testclient.Attempt) bool { return a.Status == http.StatusServiceUnavailable }, 0, 0},
		{"client-timeout", "", 300 * time.Millisecond,
			func(a testclient.Attempt) bool { return a.Err != nil }, 0, 0},
		{"longer-than-window", "?read_timeout=300ms", 10 * time.Second,
			func(a testclient.Attempt) bool { return a.Status == http.StatusServiceUnavailable },
			6 * time.Second, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testredis.StartServer(t)
			var opts []func(*server.Options)
			if tc.stall > 0 {
				opts = append(opts, func(o *server.Options) { o.Now, o.ReuseWindow = time.Now, tc.window })
			}
			e := newEnv(t, storeAt(t, srv.URL()+tc.redisQuery), time.Hour, opts...)
			rts := e.sessions(frontends)
			tr := &http.Transport{MaxIdleConnsPerHost: frontends}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: tc.httpTimeout}
			var (
				mu     sync.Mutex
				faulty = map[string]bool{} // tokens whose refresh met the fault
				seen   = make(chan struct{})
			)
			c := e.frontend(hc, func(a testclient.Attempt) {
				if !tc.fault(a) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if !faulty[a.Token] {
					faulty[a.Token] = true
					if len(faulty) == frontends {
						close(seen)
					}
				}
			})
			var ty testclient.Tally
			e.warm()
			srv.Pause()
			paused := true
			defer func() {
				if paused {
					srv.Resume()
				}
			}()
			var wg sync.WaitGroup
			for i, rt := range rts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := c.Refresh(context.Background(), rt)
					rts[i] = ty.Record(t, i, res, err)
				}()
			}
			select {
			case <-seen:
			case <-time.After(60 * time.Second):
				mu.Lock()
				n := len(faulty)
				mu.Unlock()
				t.Fatalf("after 60 s, %d of %d frontends had seen the fault", n, frontends)
			}
			time.Sleep(tc.stall) // the fault: Redis stays stopped longer than the window
			srv.Resume()
			paused = false
			wg.Wait()
			ty.Alive(t, e.frontend(http.DefaultClient, nil), rts)
			ty.Check(t, "Redis stalled ("+tc.name+")", frontends)
		})
	}
}

// Two tabs share one refresh token and refresh at the same moment: both
// get the same new refresh token, and the session goes on. 16 sessions,
// 5 rounds each.
func TestTwoTabsOneToken(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	rts := e.sessions(frontends)
	c := e.frontend(http.DefaultClient, nil)
	var ty testclient.Tally
	var wg sync.WaitGroup
	for i := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := rts[i]
			for round := 0; round < 5 && rt != ""; round++ {
				var tabs [2]testclient.Result
				var errs [2]error
				var tw sync.WaitGroup
				gate := make(chan struct{})
				for k := range tabs {
					tw.Add(1)
					go func() {
						defer tw.Done()
						<-gate
						tabs[k], errs[k] = c.Refresh(context.Background(), rt)
					}()
				}
				close(gate)
				tw.Wait()
				a, b := ty.Record(t, i, tabs[0], errs[0]), ty.Record(t, i, tabs[1], errs[1])
				if a != b && a != "" && b != "" {
					t.Errorf("session %d: two tabs got different refresh tokens", i)
				}
				rt = a
				if a == "" || b == "" {
					rt = ""
				}
			}
			rts[i] = rt
		}()
	}
	wg.Wait()
	ty.Check(t, "two tabs, one token", frontends)
	if strings.Contains(e.logs.String(), "panic") {
		t.Fatal("a panic was logged")
	}
}

// refreshRing is a refresh-key source whose set the test replaces, as a
// reload of JWT_KEYS_DIR does after `tokend keys rotate --only refresh`.
type refreshRing struct {
	p atomic.Pointer[keys.RefreshSet]
}

func (r *refreshRing) RefreshKeys() *keys.RefreshSet { return r.p.Load() }

func (r *refreshRing) use(t *testing.T, current *keys.RefreshKey, usable ...*keys.RefreshKey) {
	t.Helper()
	set, err := keys.NewRing(current, usable...)
	must(t, err)
	r.p.Store(set)
}

// The refresh key rotates while 16 frontends refresh through lost Redis
// replies (a third of the scripts' replies cut): the sessions that started
// with the old key go on refreshing under it, sign-ins after the rotation
// start with the new key, and a token of an old session MAC'd under the
// new key — what a retired key or a backup copy of one would let its
// holder make — is no token of that session: refused, nothing written,
// the session goes on. No session ends.
func TestRefreshKeyRotatedUnderLoad(t *testing.T) {
	srv := testredis.StartServer(t)
	proxy := faultproxy.Start(t, srv.Addr)
	oldKey, newKey := keys.GenerateRefreshKey(), keys.GenerateRefreshKey()
	ring := &refreshRing{}
	ring.use(t, oldKey)
	e := newEnv(t, storeAt(t, proxy.URL()), time.Hour, func(o *server.Options) { o.RefreshKeys = ring })
	rts := e.sessions(frontends)
	e.warm()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: frontends}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	c := e.frontend(hc, nil)
	var ty testclient.Tally
	var refreshed [frontends]atomic.Int64
	cutScriptReplies(proxy, c)
	wait := refreshAll(t, c, &ty, rts, 30, func(i int) { refreshed[i].Add(1) })
	// Rotate once every frontend is a third of the way.
	for i := range refreshed {
		for refreshed[i].Load() < 10 && !ty.HasEnded(i) {
			time.Sleep(time.Millisecond)
		}
	}
	ring.use(t, newKey, oldKey)
	wait()
	proxy.PassAll()
	signedIn := e.signIn().str("refresh_token")

	kid := func(rt string) string {
		p, err := token.ParseRefresh(rt)
		must(t, err)
		return p.KeyID
	}
	if kid(signedIn) != newKey.ID {
		t.Fatalf("a sign-in after the rotation used key %s, want the new %s", kid(signedIn), newKey.ID)
	}
	rts = ty.Alive(t, c, rts)
	// Cross-key substitution: each old session's current token, re-MAC'd
	// under the new key, which the server holds and verifies.
	forge := token.NewRefresher(token.StaticRefreshKeys{Set: ring.RefreshKeys()})
	for i, rt := range rts {
		if rt == "" {
			continue
		}
		p, err := token.ParseRefresh(rt)
		must(t, err)
		if p.KeyID != oldKey.ID {
			t.Fatalf("session %d moved to key %s", i, p.KeyID)
		}
		p.KeyID = newKey.ID
		other, err := forge.Derive(p, p.Generation)
		must(t, err)
		a := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {other}})
		if a.status != http.StatusBadRequest || a.str("error") != "invalid_grant" {
			t.Fatalf("session %d: the token re-MAC'd under the new key: %d %s, want invalid_grant", i, a.status, a.body)
		}
	}
	ty.Alive(t, c, rts) // the substitutions changed nothing
	ty.Check(t, "refresh key rotated under lost replies", frontends)
}
