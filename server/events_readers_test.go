package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
)

// rest reads a stream to its end and returns the names of the events it
// still delivered; it fails the test if the stream does not end (open
// bounds it).
func (s *stream) rest() []string {
	s.t.Helper()
	var names []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if strings.Contains(err.Error(), "deadline") || strings.Contains(err.Error(), "canceled") {
				s.t.Fatalf("the stream did not end: %v (delivered %v)", err, names)
			}
			return names
		}
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "event: "); ok {
			names = append(names, name)
		}
	}
}

// change replaces the client id as the CLI and the admin API do
// (store.ReplaceClient: a narrowing change ends its client_credentials
// tokens), a second after whatever happened before on the server's clock.
func (f *feedEnv) change(t *testing.T, id string, edit func(c *store.Client)) {
	t.Helper()
	ctx := context.Background()
	f.clock.Advance(time.Second)
	old, err := f.store.Client(ctx, id)
	must(t, err)
	c := old
	edit(&c)
	must(t, store.ReplaceClient(ctx, f.store, old, c, f.clock.Now()))
}

// ccToken gets a client_credentials access token of the client "feed".
func (f *feedEnv) ccToken(t *testing.T, secret string) string {
	t.Helper()
	a := f.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {server.EventsScope}}, "feed", secret)
	if a.status != 200 {
		t.Fatalf("client_credentials: %d %s", a.status, a.body)
	}
	return a.str("access_token")
}

// A reader whose authorization goes away loses its open streams at once
// — when the event about its client passes, before it hears that event —
// and cannot open new ones with what it had: a deleted client, a rotated
// secret (streams opened with the old secret, or with a token issued
// before), events:read taken away. Another client's stream goes on.
func TestEventsReaderRevoked(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), time.Hour)
		ctx := context.Background()
		otherSecret := credential.NewClientSecret()
		must(t, f.store.CreateClient(ctx, store.Client{ID: "feed2", SecretHash: credential.HashClientSecret(otherSecret),
			Grants: []string{"client_credentials"}, Scopes: []string{server.EventsScope}, CreatedAt: f.clock.Now()}))
		other, _ := f.open(t, basic("feed2", otherSecret), "")
		if hb := other.next(); hb.event != events.SSEHeartbeat {
			t.Fatalf("first frame: %+v", hb)
		}

		// The secret is rotated: both kinds of stream end, and neither
		// the old secret nor the token issued under it opens another.
		tok := f.ccToken(t, f.secret)
		byBasic, _ := f.open(t, basic("feed", f.secret), "")
		byToken, _ := f.open(t, "Bearer "+tok, "")
		byBasic.next() // the first heartbeat: the streams are up
		byToken.next()
		newSecret := credential.NewClientSecret()
		f.change(t, "feed", func(c *store.Client) { c.SecretHash = credential.HashClientSecret(newSecret) })
		for name, s := range map[string]*stream{"HTTP Basic": byBasic, "Bearer": byToken} {
			if rest := s.rest(); len(rest) != 0 {
				t.Errorf("%s stream, secret rotated: delivered %v before it ended", name, rest)
			}
		}
		if _, a := f.open(t, basic("feed", f.secret), ""); a.status != 401 {
			t.Errorf("the old secret: %d %v", a.status, a.json)
		}
		if _, a := f.open(t, "Bearer "+tok, ""); a.status != 401 || !strings.Contains(a.str("error_description"), "before the client's secret") {
			t.Errorf("a token issued before the rotation: %d %v", a.status, a.json)
		}
		// The other client's stream heard the change and goes on.
		if ev := other.tokend(); ev.Kind != events.KindClientUpdated || ev.Client != "feed" || ev.NotBefore == 0 {
			t.Fatalf("the other reader: %+v", ev)
		}

		// A token issued under the new secret (at once: tokend waits out
		// the second of the change) reads, until events:read is taken
		// away.
		tok = f.ccToken(t, newSecret)
		byToken, a := f.open(t, "Bearer "+tok, "")
		if byToken == nil {
			t.Fatalf("a token issued after the rotation: %d %v", a.status, a.json)
		}
		byBasic, _ = f.open(t, basic("feed", newSecret), "")
		byToken.next()
		byBasic.next()
		f.change(t, "feed", func(c *store.Client) { c.Scopes = []string{"read"} })
		byToken.rest()
		byBasic.rest()
		if _, a := f.open(t, "Bearer "+tok, ""); a.status != 401 || !strings.Contains(a.str("error_description"), "scopes changed") {
			t.Errorf("a token issued before events:read was taken away: %d %v", a.status, a.json)
		}
		if _, a := f.open(t, basic("feed", newSecret), ""); a.status != 403 {
			t.Errorf("without events:read: %d %v", a.status, a.json)
		}

		// Given back; then the client is deleted.
		f.change(t, "feed", func(c *store.Client) { c.Scopes = []string{server.EventsScope} })
		byBasic, _ = f.open(t, basic("feed", newSecret), "")
		byBasic.next()
		must(t, f.store.DeleteClient(ctx, "feed"))
		byBasic.rest()
		if _, a := f.open(t, basic("feed", newSecret), ""); a.status != 401 {
			t.Errorf("a deleted client: %d %v", a.status, a.json)
		}
		if ev := other.tokend(); ev.Kind != events.KindClientUpdated {
			t.Fatalf("the other reader: %+v", ev)
		}
		if ev := other.tokend(); ev.Kind != events.KindClientUpdated {
			t.Fatalf("the other reader: %+v", ev)
		}
		if ev := other.tokend(); ev.Kind != events.KindClient || ev.Client != "feed" {
			t.Fatalf("the other reader: %+v", ev)
		}
		scrape := f.get("/metrics")
		if !strings.Contains(string(scrape.body), `tokend_events_streams_ended_total{reason="reader_revoked"} 5`) {
			t.Errorf("metrics:\n%s", scrape.body)
		}
	})
}

// A Bearer reader's stream ends when its token expires.
func TestEventsStreamEndsWithItsToken(t *testing.T) {
	f := newFeedEnv(t, newMemStore(t), time.Hour)
	tok := f.ccToken(t, f.secret)
	// The server's clock says the 15-minute token has a moment left.
	f.clock.Advance(15*time.Minute - 50*time.Millisecond)
	s, a := f.open(t, "Bearer "+tok, "")
	if s == nil {
		t.Fatalf("open: %d %v", a.status, a.json)
	}
	s.rest()
	if !strings.Contains(f.logs.String(), "the access token expired") {
		t.Fatalf("log: %s", f.logs.String())
	}
}

// One client holds at most EventsMaxStreams streams on a server; the next
// gets 429 with Retry-After until one closes.
func TestEventsStreamCap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := events.NewMemoryLog(events.Retention(15*time.Minute), 0, nil)
	st := events.Wrap(newMemStore(t), log, events.Options{AccessTTL: 15 * time.Minute})
	hub := events.NewHub(log, events.HubOptions{Issuer: testIssuer, Wait: 50 * time.Millisecond})
	go hub.Run(ctx)
	e := newEnv(t, st, time.Hour, func(o *server.Options) { o.Events = hub; o.EventsMaxStreams = 2 })
	f := &feedEnv{env: e, hub: hub, secret: credential.NewClientSecret()}
	for _, id := range []string{"feed", "feed2"} {
		must(t, st.CreateClient(ctx, store.Client{ID: id, SecretHash: credential.HashClientSecret(f.secret),
			Grants: []string{"client_credentials"}, Scopes: []string{server.EventsScope}, CreatedAt: e.clock.Now()}))
	}
	first, _ := f.open(t, basic("feed", f.secret), "")
	f.open(t, basic("feed", f.secret), "")
	_, a := f.open(t, basic("feed", f.secret), "")
	if a.status != http.StatusTooManyRequests || a.str("error") != "too_many_streams" || a.header.Get("Retry-After") == "" {
		t.Fatalf("a third stream: %d %v %v", a.status, a.header, a.json)
	}
	if s, a := f.open(t, basic("feed2", f.secret), ""); s == nil { // another client's budget
		t.Fatalf("another client: %d %v", a.status, a.json)
	}
	first.next()
	first.resp.Body.Close()
	for i := 0; ; i++ { // the server notices the close at its next write
		s, a := f.open(t, basic("feed", f.secret), "")
		if s != nil {
			break
		}
		if a.status != http.StatusTooManyRequests || i > 200 {
			t.Fatalf("after closing one: %d %v", a.status, a.json)
		}
		hub.Log().Append(ctx, events.Event{Kind: events.KindSession, Session: "s" + strconv.Itoa(i), Until: time.Now().Add(time.Minute)})
		time.Sleep(10 * time.Millisecond)
	}
}

// A Last-Event-ID the log did not hand out where it says — a far-future
// time with a sequence number in range — would sort after every later
// event: the stream says "gap" and replays everything instead of
// silently sending nothing more.
func TestEventsMisplacedLastEventID(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), time.Hour)
		for range 2 {
			a := f.signIn()
			f.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {a.str("refresh_token")}})
		}
		s, _ := f.open(t, basic("feed", f.secret), "")
		first, second := s.nextEvent(), s.nextEvent()
		firstID, err := events.ParseID(first.id)
		must(t, err)
		forged := events.ID{MS: firstID.MS + int64(24*time.Hour/time.Millisecond), Seq: firstID.Seq}.String()
		s2, _ := f.open(t, basic("feed", f.secret), forged)
		if g := s2.next(); g.event != events.SSEGap {
			t.Fatalf("a misplaced Last-Event-ID: %+v, want a gap", g)
		}
		if ev := s2.nextEvent(); ev.id != first.id {
			t.Fatalf("after the gap: %s, want the first event %s", ev.id, first.id)
		}
		// A genuine one resumes without a gap.
		s3, _ := f.open(t, basic("feed", f.secret), first.id)
		if ev := s3.next(); ev.id != second.id {
			t.Fatalf("resumed after %s: %+v, want %s", first.id, ev, second.id)
		}
	})
}

// A client's own access tokens end when its secret is rotated or a scope
// taken away: introspection says inactive, /events refuses them; a token
// asked for right after the change is valid. Revoking one by itself is
// unsupported_token_type (RFC 7009 §2.2.1), not a 200 that changes nothing.
func TestClientTokensEndWithTheChange(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		f := newFeedEnv(t, newStore(t), time.Hour)
		introspect := func(tok string) bool {
			t.Helper()
			a := f.post("/oauth/introspect", url.Values{"token": {tok}}, backendApp, f.env.secret)
			if a.status != 200 {
				t.Fatalf("introspect: %d %s", a.status, a.body)
			}
			return a.json["active"] == true
		}
		old := f.ccToken(t, f.secret)
		if !introspect(old) {
			t.Fatal("a fresh client_credentials token is inactive")
		}
		r := f.post("/oauth/revoke", url.Values{"token": {old}}, "feed", f.secret)
		wantError(t, r, http.StatusBadRequest, "unsupported_token_type", "rotating the client's secret")
		if r := f.post("/oauth/revoke", url.Values{"token": {old}}, backendApp, f.env.secret); r.status != 400 || r.str("error") != "unauthorized_client" {
			t.Fatalf("another client revoking it: %d %s", r.status, r.body)
		}

		f.change(t, "feed", func(c *store.Client) { c.Scopes = append(c.Scopes, "more") }) // adding ends nothing
		if !introspect(old) {
			t.Fatal("a scope added ended the client's tokens")
		}
		newSecret := credential.NewClientSecret()
		f.change(t, "feed", func(c *store.Client) { c.SecretHash = credential.HashClientSecret(newSecret) })
		if introspect(old) {
			t.Fatal("a token issued before the secret was rotated is active")
		}
		fresh := f.ccToken(t, newSecret)
		if !introspect(fresh) {
			t.Fatal("a token issued right after the rotation is inactive")
		}
		f.change(t, "feed", func(c *store.Client) { c.Scopes = []string{server.EventsScope} }) // "more" taken away
		if introspect(fresh) {
			t.Fatal("a token issued before a scope was taken away is active")
		}
		last := f.ccToken(t, newSecret)
		if !introspect(last) {
			t.Fatal("a token issued after the narrowing is inactive")
		}
		must(t, f.store.DeleteClient(context.Background(), "feed"))
		if introspect(last) {
			t.Fatal("a deleted client's token is active")
		}
	})
}
