package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/verify"
)

// balancer dials the first live replica in order, as a load balancer in
// front of the replicas would: a stream to a replica that dies is
// reopened on another.
type balancer struct {
	mu       sync.Mutex
	addrs    []string
	lastFeed string // the replica the last connection went to
}

func (b *balancer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	b.mu.Lock()
	addrs := slices.Clone(b.addrs)
	b.mu.Unlock()
	var err error
	for _, a := range addrs {
		d := net.Dialer{Timeout: time.Second}
		var c net.Conn
		if c, err = d.DialContext(ctx, network, a); err == nil {
			b.mu.Lock()
			b.lastFeed = a
			b.mu.Unlock()
			return c, nil
		}
	}
	return nil, err
}

func (b *balancer) connectedTo() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastFeed
}

// feedRig is three replicas on one Redis and a resource server whose
// verifier follows the revocation feed through a balancer.
type feedRig struct {
	*deployment
	lb       *balancer
	v        *verify.Verifier
	resource *httptest.Server
}

func newFeedRig(t *testing.T) *feedRig {
	srv := testredis.StartServer(t)
	// A client cache that would hold a deleted client for an hour: only
	// the revocation events can take it out (TestClientDeletionReachesEveryReplica).
	d := deploy(t, srv.URL(), "CLIENT_CACHE_TTL=1h")
	out := mustRunBin(t, d.bin, d.env, "", "clients", "create", "orders", "--grants", "client_credentials", "--scopes", "events:read")
	m := regexp.MustCompile(`client_secret: (cs_[A-Za-z0-9_-]{43})`).FindStringSubmatch(out.stdout)
	if m == nil {
		t.Fatalf("no client secret in %q", out.stdout)
	}
	lb := &balancer{}
	for _, r := range d.replicas {
		lb.addrs = append(lb.addrs, strings.TrimPrefix(r.base, "http://"))
	}
	tr := &http.Transport{DialContext: lb.dial, MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := verify.New(ctx, "http://tokend.test", verify.InsecureSkipAudienceCheck(),
		verify.WithJWKSURL("http://tokend-lb/.well-known/jwks.json"),
		verify.WithHTTPClient(&http.Client{Transport: tr, Timeout: 10 * time.Second}),
		verify.WithRevocations(verify.Revocations{ClientID: "orders", ClientSecret: m[1], HTTPClient: &http.Client{Transport: tr}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	if err := v.WaitRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	resource := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })))
	t.Cleanup(resource.Close)
	return &feedRig{deployment: d, lb: lb, v: v, resource: resource}
}

// call is one request to the resource server.
func (f *feedRig) call(at string) int {
	req, _ := http.NewRequest(http.MethodGet, f.resource.URL, nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// trial signs in at one replica, checks the resource server accepts the
// access token, logs out at another (every fourth time: everywhere), and
// returns the time from the logout's 204 to the first 401 at the resource
// server, or false if no 401 came within the bound.
func (f *feedRig) trial(i int, live []int) (time.Duration, bool) {
	t := f.t
	in, out := live[i%len(live)], live[(i+1)%len(live)]
	r := post(t, f.hc, f.url(in, "/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {f.users[i%3]}, "password": {scalePassword}})
	if r.status != 200 {
		t.Fatalf("trial %d: sign in at replica %d: %d %s", i, in, r.status, r.body)
	}
	at := r.str("access_token")
	if c := f.call(at); c != 200 {
		t.Fatalf("trial %d: a fresh token refused: %d", i, c)
	}
	form := url.Values{"client_id": {"web"}, "refresh_token": {r.str("refresh_token")}}
	if i%4 == 3 {
		form.Set("scope", "global")
	}
	if r := post(t, f.hc, f.url(out, "/logout"), form); r.status != 204 {
		t.Fatalf("trial %d: logout at replica %d: %d %s", i, out, r.status, r.body)
	}
	start := time.Now()
	for time.Since(start) < 30*time.Second { // a bound, not an assertion on time
		if f.call(at) == 401 {
			return time.Since(start), true
		}
		time.Sleep(500 * time.Microsecond)
	}
	return 0, false
}

func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// From the 204 of a logout at one replica to the first 401 at a resource
// server whose verifier follows the feed, over 200 trials across three
// replicas; then 200 more while the replica the verifier is connected to
// is killed (SIGKILL) and later restarted: no revocation may be missed.
// Timings are reported, not asserted (docs/performance.md).
func TestRevocationFeedThreeReplicas(t *testing.T) {
	const trials = 200
	f := newFeedRig(t)
	all := []int{0, 1, 2}
	var lat []time.Duration
	for i := 0; i < trials; i++ {
		d, ok := f.trial(i, all)
		if !ok {
			t.Fatalf("trial %d: the logged-out token was never refused", i)
		}
		lat = append(lat, d)
	}
	p50, p99, worst := percentiles(lat)
	t.Logf("logout 204 → first 401 at the resource server, %d trials over 3 replicas: p50 %v, p99 %v, max %v",
		trials, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), worst.Round(10*time.Microsecond))

	// Kill the replica the feed is connected to, mid-run, then restart it.
	victim := slices.IndexFunc(f.replicas, func(r *replica) bool { return strings.TrimPrefix(r.base, "http://") == f.lb.connectedTo() })
	if victim < 0 {
		t.Fatalf("the feed is connected to %q, not a replica", f.lb.connectedTo())
	}
	live := slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == victim })
	before := f.v.RevocationStats().Reconnects
	lat = lat[:0]
	missed := 0
	for i := 0; i < trials; i++ {
		switch i {
		case trials / 4:
			_ = f.replicas[victim].cmd.Process.Signal(syscall.SIGKILL)
			<-f.replicas[victim].done
		case trials / 2:
			f.replicas[victim] = startServeAt(t, f.bin, f.env, strings.TrimPrefix(f.replicas[victim].base, "http://"))
		}
		use := all
		if i >= trials/4 && i < trials/2 {
			use = live
		}
		d, ok := f.trial(i, use)
		if !ok {
			missed++
			continue
		}
		lat = append(lat, d)
	}
	if missed > 0 {
		t.Fatalf("%d of %d revocations missed across the kill and restart of replica %d", missed, trials, victim)
	}
	st := f.v.RevocationStats()
	if st.Reconnects <= before {
		t.Fatalf("the verifier never reconnected (%+v): the kill did not hit its replica", st)
	}
	p50, p99, worst = percentiles(lat)
	t.Logf("the same while replica %d (the feed's) was killed at trial %d and restarted at trial %d: %d trials, none missed, %d reconnection(s): p50 %v, p99 %v, max %v",
		victim, trials/4, trials/2, trials, st.Reconnects-before, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), worst.Round(10*time.Microsecond))
}

// Rotating a client's secret, then deleting the client, with the CLI
// reaches every replica's client cache through the revocation events —
// the caches would otherwise keep the old record for CLIENT_CACHE_TTL, an
// hour here — and after the deletion the resource server refuses the
// tokens it was issued.
func TestClientDeletionReachesEveryReplica(t *testing.T) {
	f := newFeedRig(t)
	secret := f.secret
	cc := func(i int) reply {
		return post(t, f.hc, f.url(i, "/oauth/token"), url.Values{"grant_type": {"client_credentials"}}, "backend", secret)
	}
	var at string
	for i := range f.replicas { // every replica caches the client
		r := cc(i)
		if r.status != 200 {
			t.Fatalf("client_credentials at replica %d: %d %s", i, r.status, r.body)
		}
		at = r.str("access_token")
	}
	if c := f.call(at); c != 200 {
		t.Fatalf("the client's token at the resource server: %d", c)
	}

	// A rotated secret: the old one is refused by every replica (the
	// client-updated event empties their caches), the new one works, and
	// the client's tokens issued before are refused by the resource
	// server (the event carries the client's not-before) while one issued
	// at once with the new secret is accepted.
	out := mustRunBin(t, f.bin, f.env, "", "clients", "rotate-secret", "backend")
	m := regexp.MustCompile(`client_secret: (cs_[A-Za-z0-9_-]{43})`).FindStringSubmatch(out.stdout)
	if m == nil {
		t.Fatalf("no client secret in %q", out.stdout)
	}
	start := time.Now()
	for i := range f.replicas {
		for cc(i).status != 401 {
			if time.Since(start) > 30*time.Second { // a bound, far below the cache's hour
				t.Fatalf("replica %d still accepts the rotated-out secret", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("a secret rotated by the CLI is refused by all 3 replicas (cache TTL 1h) after %v", time.Since(start).Round(100*time.Microsecond))
	secret = m[1]
	for i := range f.replicas {
		if r := cc(i); r.status != 200 {
			t.Fatalf("the new secret at replica %d: %d %s", i, r.status, r.body)
		}
	}
	for c := f.call(at); c != 401; c = f.call(at) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("a token issued before the rotation at the resource server: %d", c)
		}
		time.Sleep(time.Millisecond)
	}
	if c := f.call(cc(0).str("access_token")); c != 200 {
		t.Fatalf("a token issued after the rotation at the resource server: %d", c)
	}
	at = cc(1).str("access_token")

	mustRunBin(t, f.bin, f.env, "", "clients", "delete", "backend")
	start = time.Now()
	for i := range f.replicas {
		for cc(i).status != 401 {
			if time.Since(start) > 30*time.Second { // a bound, far below the cache's hour
				t.Fatalf("replica %d still accepts the deleted client", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	took := time.Since(start)
	for f.call(at) != 401 {
		if time.Since(start) > 30*time.Second {
			t.Fatal("the resource server still accepts the deleted client's token")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("a client deleted by the CLI is refused by all 3 replicas (cache TTL 1h) after %v, and its token by the resource server", took.Round(100*time.Microsecond))
}
