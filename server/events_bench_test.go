package server_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/verify"
)

// BenchmarkEventsFanOut100: how many events per second one replica fans
// out to 100 GET /events subscribers, from the Redis Stream through the
// replica's hub to every stream (docs/performance.md). Events are
// appended by 16 writers; each op is one event delivered to all 100.
func BenchmarkEventsFanOut100(b *testing.B) {
	const subscribers = 100
	f := newFeedEnv(b, redisStore(b), time.Hour)
	log := f.hub.Log()
	auth := basic("feed", f.secret)
	var received atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: subscribers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var ready sync.WaitGroup
	for i := 0; i < subscribers; i++ {
		ready.Add(1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
			req.Header.Set("Authorization", auth)
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Errorf("subscribe: %v", err)
				ready.Done()
				return
			}
			defer resp.Body.Close()
			r := bufio.NewReaderSize(resp.Body, 64<<10)
			once := sync.OnceFunc(ready.Done)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					once()
					return
				}
				once() // the retry: line: the stream is open
				if strings.HasPrefix(line, "id: ") {
					received.Add(1)
				}
			}
		}()
	}
	ready.Wait()
	now := time.Now()
	e := events.Event{Kind: events.KindSession, Subject: "u", Session: "01jgxyzabcdefghjkmnpqrstvw", Reason: store.ReasonLogout, Time: now, Until: now.Add(15 * time.Minute)}
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := log.Append(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := int64(b.N) * subscribers
	for received.Load() < want {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkEventsAppend: the event log's append rate alone (16 writers),
// the ceiling of BenchmarkEventsFanOut100.
func BenchmarkEventsAppend(b *testing.B) {
	f := newFeedEnv(b, redisStore(b), time.Hour)
	log := f.hub.Log()
	now := time.Now()
	e := events.Event{Kind: events.KindSession, Subject: "u", Session: "01jgxyzabcdefghjkmnpqrstvw", Reason: store.ReasonLogout, Time: now, Until: now.Add(15 * time.Minute)}
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := log.Append(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLogoutToRefusal: from the 204 of POST /logout to the first
// refusal by a verify.Verifier following this server's GET /events (one
// replica, Redis log, in process); p50 and p99 over b.N logouts. The
// three-process figure is TestRevocationFeedThreeReplicas's.
func BenchmarkLogoutToRefusal(b *testing.B) {
	raw := redisStore(b)
	f := newFeedEnv(b, raw, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := verify.New(ctx, testIssuer, verify.WithAudience("orders"),
		verify.WithJWKSURL(f.srv.URL+"/.well-known/jwks.json"),
		verify.WithRevocations(verify.Revocations{URL: f.srv.URL + "/events", ClientID: "feed", ClientSecret: f.secret}))
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitRevocations(ctx); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := f.signIn()
		at := a.str("access_token")
		if _, err := v.Verify(ctx, at); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if r := f.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {a.str("refresh_token")}}); r.status != 204 {
			b.Fatalf("logout: %d %s", r.status, r.body)
		}
		start := time.Now()
		for {
			if _, err := v.Verify(ctx, at); errors.Is(err, verify.ErrRevoked) {
				break
			}
			if ctx.Err() != nil {
				b.Fatal("never refused")
			}
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
