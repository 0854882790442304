package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
)

// sse is one Server-Sent Events frame.
type sse struct{ id, event, data string }

// stream is an open GET /events.
type stream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// next returns the next frame with an event name (skipping retry: lines).
func (s *stream) next() sse {
	s.t.Helper()
	var f sse
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the stream: %v (frame so far %+v)", err, f)
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if f.event != "" {
				return f
			}
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "id":
			f.id = v
		case "event":
			f.event = v
		case "data":
			f.data = v
		}
	}
}

// nextEvent skips heartbeats.
func (s *stream) nextEvent() sse {
	s.t.Helper()
	for {
		if f := s.next(); f.event != events.SSEHeartbeat {
			return f
		}
	}
}

func (s *stream) tokend() events.Claims {
	s.t.Helper()
	f := s.nextEvent()
	var p struct {
		Jti    string                     `json:"jti"`
		Events map[string]json.RawMessage `json:"events"`
		Tokend events.Claims              `json:"tokend"`
	}
	if err := json.Unmarshal([]byte(f.data), &p); err != nil || p.Jti != f.id || len(p.Events) != 1 {
		s.t.Fatalf("event %+v: %v", f, err)
	}
	return p.Tokend
}

type feedEnv struct {
	*env
	hub    *events.Hub
	secret string // of the client "feed", allowed events:read
}

func newFeedEnv(t testing.TB, raw store.Store, heartbeat time.Duration) *feedEnv {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var log events.Log = events.NewMemoryLog(events.Retention(15*time.Minute), 0, nil)
	if rs, ok := raw.(*redisstore.Store); ok {
		log = events.NewRedisLog(rs.Redis(), testredis.Prefix(t), events.Retention(15*time.Minute), 0)
	}
	st := events.Wrap(raw, log, events.Options{AccessTTL: 15 * time.Minute})
	hub := events.NewHub(log, events.HubOptions{Issuer: testIssuer, Wait: 50 * time.Millisecond})
	go hub.Run(ctx)
	e := newEnv(t, st, time.Hour, func(o *server.Options) { o.Events = hub; o.EventsHeartbeat = heartbeat })
	secret := credential.NewClientSecret()
	must(t, st.CreateClient(ctx, store.Client{ID: "feed", SecretHash: credential.HashClientSecret(secret),
		Grants: []string{"client_credentials"}, Scopes: []string{server.EventsScope}, CreatedAt: e.clock.Now()}))
	return &feedEnv{env: e, hub: hub, secret: secret}
}

func (f *feedEnv) open(t *testing.T, auth, lastID string) (*stream, answer) {
	t.Helper()
	// A bound, so that a missing event fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
	must(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var a answer
		a.status, a.header = resp.StatusCode, resp.Header
		_ = json.NewDecoder(resp.Body).Decode(&a.json)
		return nil, a
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &stream{t: t, resp: resp, r: bufio.NewReader(resp.Body)}, answer{status: 200, header: resp.Header}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func sidOf(t *testing.T, at string) string {
	t.Helper()
	_, c := testkit.Decode(t, at)
	sid, _ := c["sid"].(string)
	return sid
}

// Only confidential clients with events:read read the feed.
func TestEventsAuthentication(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), time.Hour)
		_, a := f.open(t, "", "")
		if a.status != 401 || a.str("error") != "invalid_client" {
			t.Fatalf("no credentials: %d %v", a.status, a.json)
		}
		_, a = f.open(t, basic("feed", "wrong"), "")
		if a.status != 401 {
			t.Fatalf("wrong secret: %d %v", a.status, a.json)
		}
		_, a = f.open(t, basic(backendApp, f.env.secret), "")
		if a.status != 403 || a.str("error") != "access_denied" {
			t.Fatalf("a client without events:read: %d %v", a.status, a.json)
		}
		// A user's access token is not a feed credential.
		_, a = f.open(t, "Bearer "+f.signIn().str("access_token"), "")
		if a.status != 403 {
			t.Fatalf("a user's access token: %d %v", a.status, a.json)
		}
		_, a = f.open(t, "Bearer not-a-token", "")
		if a.status != 401 {
			t.Fatalf("a bad token: %d %v", a.status, a.json)
		}
		_, a = f.open(t, basic("feed", f.secret), "not-an-id")
		if a.status != 400 || a.str("error") != "invalid_request" {
			t.Fatalf("malformed Last-Event-ID: %d %v", a.status, a.json)
		}
		s, a := f.open(t, basic("feed", f.secret), "")
		if s == nil || a.header.Get("Content-Type") != "text/event-stream" || a.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("HTTP Basic: %d %v", a.status, a.header)
		}
		// A client_credentials token with the scope.
		cc := f.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {server.EventsScope}}, "feed", f.secret)
		if cc.status != 200 {
			t.Fatalf("client_credentials: %d %s", cc.status, cc.body)
		}
		if s, a := f.open(t, "Bearer "+cc.str("access_token"), ""); s == nil {
			t.Fatalf("Bearer: %d %v", a.status, a.json)
		}
		// Once the client is deleted its token reads no more.
		must(t, f.store.DeleteClient(context.Background(), "feed"))
		if _, a := f.open(t, "Bearer "+cc.str("access_token"), ""); a.status != 401 {
			t.Fatalf("a deleted client's token: %d %v", a.status, a.json)
		}
	})
}

// Session ends arrive as events; a consumer resumes after its last event
// without a replay or a gap; heartbeats while idle; a Last-Event-ID the
// log cannot honour gets a gap event and the retained history.
func TestEventsStream(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), 20*time.Millisecond)
		auth := basic("feed", f.secret)
		s, _ := f.open(t, auth, "")
		if hb := s.next(); hb.event != events.SSEHeartbeat || !strings.Contains(hb.data, `"time":`) {
			t.Fatalf("first frame on an idle feed: %+v", hb)
		}

		a := f.signIn()
		sid := sidOf(t, a.str("access_token"))
		if r := f.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {a.str("refresh_token")}}); r.status != 204 {
			t.Fatalf("logout: %d %s", r.status, r.body)
		}
		first := s.nextEvent()
		var p struct {
			Events map[string]struct {
				Subject struct {
					Session struct{ ID string } `json:"session"`
				} `json:"subject"`
			} `json:"events"`
			Tokend events.Claims `json:"tokend"`
		}
		must(t, json.Unmarshal([]byte(first.data), &p))
		caep := p.Events[events.CAEPSessionRevoked]
		if first.event != events.SSESessionRevoked || caep.Subject.Session.ID != sid || p.Tokend.Session != sid ||
			p.Tokend.Kind != events.KindSession || p.Tokend.Subject != f.userID || p.Tokend.Until <= time.Now().Unix() {
			t.Fatalf("logout event: %+v", first)
		}

		b, c := f.signIn(), f.signIn()
		if r := f.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {b.str("refresh_token")}, "scope": {"others"}}); r.status != 204 {
			t.Fatalf("logout others: %d %s", r.status, r.body)
		}
		ev := s.tokend()
		if ev.Kind != events.KindUser || ev.Subject != f.userID || ev.Except != sidOf(t, b.str("access_token")) || ev.NotBefore == 0 {
			t.Fatalf("log out others: %+v", ev)
		}
		// Reuse detected: a token two generations old.
		rt := b.str("refresh_token")
		for range 2 {
			r := f.refresh(rt)
			if r.status != 200 {
				t.Fatalf("refresh: %d %s", r.status, r.body)
			}
			rt = r.str("refresh_token")
		}
		if r := f.refresh(b.str("refresh_token")); r.status != 400 {
			t.Fatalf("reuse: %d %s", r.status, r.body)
		}
		if ev := s.tokend(); ev.Kind != events.KindSession || ev.Reason != store.ReasonReuse || ev.Session != sidOf(t, b.str("access_token")) {
			t.Fatalf("reuse: %+v", ev)
		}
		_ = c

		// Resume after the first event: the next is the second, once.
		s2, _ := f.open(t, auth, first.id)
		if ev := s2.tokend(); ev.Kind != events.KindUser {
			t.Fatalf("resumed: %+v", ev)
		}
		if ev := s2.tokend(); ev.Reason != store.ReasonReuse {
			t.Fatalf("resumed, second: %+v", ev)
		}
		if hb := s2.next(); hb.event != events.SSEHeartbeat {
			t.Fatalf("resumed, then: %+v", hb)
		}

		// From a log this one never wrote: a gap, then all of it.
		s3, _ := f.open(t, auth, "1-999999")
		if g := s3.next(); g.event != events.SSEGap || !strings.Contains(g.data, "history_unavailable") {
			t.Fatalf("gap: %+v", g)
		}
		if ev := s3.nextEvent(); ev.id != first.id {
			t.Fatalf("after the gap: %+v, want the first event %s", ev, first.id)
		}

		// Shutdown ends the streams.
		f.server.CloseStreams()
		for {
			if _, err := s.r.ReadString('\n'); err != nil {
				break
			}
		}
	})
}

// Every way the server ends a session reaches the feed: RFC 7009
// revocation, logout with a Bearer access token, DELETE /sessions/{id},
// log out everywhere.
func TestEventsFromEverySessionEnd(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), time.Hour)
		s, _ := f.open(t, basic("feed", f.secret), "")

		a := f.signIn()
		if r := f.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {a.str("refresh_token")}}); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if ev := s.tokend(); ev.Kind != events.KindSession || ev.Session != sidOf(t, a.str("access_token")) || ev.Reason != store.ReasonRevoked {
			t.Fatalf("RFC 7009 revocation: %+v", ev)
		}

		b := f.signIn()
		if r := f.postBearer("/logout", url.Values{}, b.str("access_token")); r.status != 204 {
			t.Fatalf("Bearer logout: %d %s", r.status, r.body)
		}
		if ev := s.tokend(); ev.Kind != events.KindSession || ev.Session != sidOf(t, b.str("access_token")) {
			t.Fatalf("logout with a Bearer access token: %+v", ev)
		}

		c, d := f.signIn(), f.signIn()
		if r := f.bearer(http.MethodDelete, "/sessions/"+sidOf(t, d.str("access_token")), "Bearer "+c.str("access_token")); r.status != 204 {
			t.Fatalf("DELETE /sessions: %d %s", r.status, r.body)
		}
		if ev := s.tokend(); ev.Kind != events.KindSession || ev.Session != sidOf(t, d.str("access_token")) {
			t.Fatalf("DELETE /sessions/{id}: %+v", ev)
		}

		e := f.signIn()
		if r := f.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {e.str("refresh_token")}, "scope": {"global"}}); r.status != 204 {
			t.Fatalf("logout global: %d %s", r.status, r.body)
		}
		ev := s.tokend()
		if ev.Kind != events.KindUser || ev.Subject != f.userID || ev.Except != "" || ev.NotBefore == 0 {
			t.Fatalf("log out everywhere: %+v", ev)
		}
		for _, x := range []answer{c, e} {
			if sid := sidOf(t, x.str("access_token")); !slices.Contains(ev.Sessions, sid) {
				t.Errorf("log out everywhere does not name the active session %s: %v", sid, ev.Sessions)
			}
		}
	})
}
