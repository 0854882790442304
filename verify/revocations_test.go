package verify_test

// These tests use only the standard library: a fake tokend serves the
// metadata, a JWKS of one ES256 key and a scripted GET /events.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/verify"
)

// feedIssuer is a fake tokend with a revocation feed.
type feedIssuer struct {
	t    *testing.T
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	mu   sync.Mutex
	seen []string         // Last-Event-ID of each GET /events ("" for none)
	conn chan chan string // each GET /events takes one channel and writes what is sent on it; closing ends the stream
}

func newFeedIssuer(t *testing.T) *feedIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &feedIssuer{t: t, key: key, conn: make(chan chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks", "revocation_events_endpoint": f.srv.URL + "/events"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		b := func(n []byte) string { return base64.RawURLEncoding.EncodeToString(n) }
		pub := key.PublicKey
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
			"x": b(pub.X.FillBytes(make([]byte, 32))), "y": b(pub.Y.FillBytes(make([]byte, 32))),
		}}})
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "orders" || secret != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, r.Header.Get("Last-Event-ID"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "retry: 1000\n\n")
		w.(http.Flusher).Flush()
		var frames chan string
		select {
		case frames = <-f.conn:
		case <-r.Context().Done():
			return
		}
		for {
			select {
			case s, ok := <-frames:
				if !ok {
					return
				}
				fmt.Fprint(w, s)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// stream makes the next GET /events take its frames from the result.
func (f *feedIssuer) stream() chan string {
	c := make(chan string, 16)
	f.conn <- c
	return c
}

func (f *feedIssuer) lastEventIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// mint signs an access token for sub and sid issued at iat.
func (f *feedIssuer) mint(sub, client, sid string, iat time.Time) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	signing := enc(map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": "k1"}) + "." + enc(map[string]any{
		"iss": f.srv.URL, "sub": sub, "client_id": client, "sid": sid, "jti": fmt.Sprint(iat.UnixNano()),
		"iat": iat.Unix(), "nbf": iat.Unix(), "exp": iat.Add(15 * time.Minute).Unix(), "scope": "read",
	})
	h := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, f.key, h[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...))
}

func frame(id, event, tokend string) string {
	return fmt.Sprintf("id: %s\nevent: %s\ndata: {\"jti\":%q,\"events\":{},\"tokend\":%s}\n\n", id, event, id, tokend)
}

const heartbeat = "event: heartbeat\ndata: {\"time\":1}\n\n"

// eventually polls cond; the bound only keeps a broken test from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newFeedVerifier(t *testing.T, f *feedIssuer, r verify.Revocations) *verify.Verifier {
	t.Helper()
	r.ClientID, r.ClientSecret = "orders", "s3cret"
	v, err := verify.New(context.Background(), f.srv.URL, verify.InsecureSkipAudienceCheck(), verify.WithRevocations(r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestRevocationFeed(t *testing.T) {
	f := newFeedIssuer(t)
	v := newFeedVerifier(t, f, verify.Revocations{})
	s := f.stream()
	now := time.Now()
	until := now.Add(15 * time.Minute).Unix()
	before := now.Add(-time.Minute)
	a, b, other := f.mint("u1", "web", "s1", before), f.mint("u1", "web", "s2", before), f.mint("u2", "web", "s9", before)
	for _, tok := range []string{a, b, other} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("before any event: %v", err)
		}
	}

	// One session ends.
	s <- frame("100-1", "session-revoked", fmt.Sprintf(`{"kind":"session","sub":"u1","sid":"s1","until":%d}`, until))
	s <- heartbeat
	eventually(t, "the session event is applied", func() bool { return v.RevocationStats().Events == 1 })
	_, err := v.Verify(context.Background(), a)
	if !errors.Is(err, verify.ErrRevoked) || !errors.Is(err, verify.ErrInvalid) {
		t.Fatalf("a token of the ended session: %v", err)
	}
	if _, err := v.Verify(context.Background(), b); err != nil {
		t.Fatalf("another session of the same user: %v", err)
	}
	// The middleware answers 401 invalid_token "revoked".
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+a)
	v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a revoked token reached the handler") })).ServeHTTP(rec, req)
	if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) || !strings.Contains(rec.Body.String(), "revoked") {
		t.Fatalf("middleware: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}

	// Log out others from s2: u1's tokens issued before now are refused,
	// except s2's; tokens issued after are accepted.
	nb := now.UnixMilli()
	s <- frame("101-2", "session-revoked", fmt.Sprintf(`{"kind":"user","sub":"u1","not_before_ms":%d,"except_sid":"s2","sids":["s5"],"until":%d}`, nb, until))
	eventually(t, "the user event is applied", func() bool { return v.RevocationStats().Events == 2 })
	for name, c := range map[string]struct {
		tok  string
		want error
	}{
		"s3, issued before":          {f.mint("u1", "web", "s3", before), verify.ErrRevoked},
		"s2 (exempt), issued before": {b, nil},
		"s4, issued after":           {f.mint("u1", "web", "s4", now.Add(2*time.Second)), nil},
		// iat is whole seconds: in the not-before's own second only the
		// sessions the event names are refused.
		"s5, named, same second":         {f.mint("u1", "web", "s5", now), verify.ErrRevoked},
		"s6, started in the same second": {f.mint("u1", "web", "s6", now), nil},
		"another user":                   {other, nil},
	} {
		if _, err := v.Verify(context.Background(), c.tok); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}

	// A deleted client: its tokens issued before are refused.
	s <- frame("102-3", "client-deleted", fmt.Sprintf(`{"kind":"client","client_id":"web","not_before_ms":%d,"until":%d}`, nb, until))
	eventually(t, "the client event is applied", func() bool { return v.RevocationStats().Events == 3 })
	if _, err := v.Verify(context.Background(), other); !errors.Is(err, verify.ErrRevoked) {
		t.Fatalf("a deleted client's token: %v", err)
	}
	st := v.RevocationStats()
	if st.Sessions != 2 || st.Users != 1 || st.Clients != 1 || st.LastEventID != "102-3" || !st.Connected {
		t.Fatalf("stats: %+v", st)
	}
	if lag := v.RevocationLag(); lag < 0 || lag > time.Minute {
		t.Fatalf("lag %v", lag)
	}

	// An updated client without a not-before revokes nothing, but the
	// stream resumes after it.
	svcOwn := f.mint("svc", "svc", "", before) // the client's own token (client_credentials)
	s <- frame("102-4", "client-updated", fmt.Sprintf(`{"kind":"client_updated","client_id":"svc","until":%d}`, until))
	eventually(t, "the client-updated event is passed", func() bool { return v.RevocationStats().LastEventID == "102-4" })
	if st := v.RevocationStats(); st.Sessions != 2 || st.Users != 1 || st.Clients != 1 {
		t.Fatalf("a client-updated event without a not-before changed the revocations: %+v", st)
	}
	for _, tok := range []string{f.mint("u3", "svc", "s8", before), svcOwn} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("a token of an updated client: %v", err)
		}
	}
	// With one (a rotated secret, a scope taken away): the client's own
	// tokens issued at or before it are refused; its users' are not, nor
	// its own from a later second.
	s <- frame("102-5", "client-updated", fmt.Sprintf(`{"kind":"client_updated","client_id":"svc","not_before_ms":%d,"until":%d}`, nb, until))
	eventually(t, "the client-updated event is applied", func() bool { return v.RevocationStats().LastEventID == "102-5" })
	for name, c := range map[string]struct {
		tok  string
		want error
	}{
		"its own token, issued before":        {svcOwn, verify.ErrRevoked},
		"its own token, in the same second":   {f.mint("svc", "svc", "", now), verify.ErrRevoked},
		"its own token, from the next second": {f.mint("svc", "svc", "", now.Add(time.Second)), nil},
		"a user's token through it, before":   {f.mint("u3", "svc", "s8", before), nil},
		"another client's own token, before":  {f.mint("api", "api", "", before), nil},
	} {
		if _, err := v.Verify(context.Background(), c.tok); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if st := v.RevocationStats(); st.Clients != 2 {
		t.Fatalf("stats after a client change: %+v", st)
	}

	// The stream ends: the verifier reconnects and resumes after 102-4.
	close(s)
	s = f.stream()
	s <- frame("103-5", "session-revoked", fmt.Sprintf(`{"kind":"session","sub":"u2","sid":"s9","until":%d}`, until))
	eventually(t, "the event after the reconnection is applied", func() bool { return v.RevocationStats().Events == 6 })
	if ids := f.lastEventIDs(); len(ids) != 2 || ids[0] != "" || ids[1] != "102-5" {
		t.Fatalf("Last-Event-ID of each connection: %q", ids)
	}
	if st := v.RevocationStats(); st.Reconnects != 1 {
		t.Fatalf("reconnects %d", st.Reconnects)
	}
	// A gap is counted.
	s <- "event: gap\ndata: {\"reason\":\"history_unavailable\"}\n\n"
	eventually(t, "the gap is counted", func() bool { return v.RevocationStats().Gaps == 1 })
}

// FailClosed refuses every token (503) until the feed has caught up.
func TestRevocationFeedFailClosed(t *testing.T) {
	f := newFeedIssuer(t)
	v := newFeedVerifier(t, f, verify.Revocations{FailClosed: true})
	tok := f.mint("u1", "web", "s1", time.Now())
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("before the feed caught up: %v", err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "revocation feed") {
		t.Fatalf("middleware while the feed is down: %d %s", rec.Code, rec.Body)
	}
	s := f.stream()
	s <- heartbeat
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.WaitRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("caught up: %v", err)
	}
	// The stream ends: not caught up until the next heartbeat.
	close(s)
	eventually(t, "the verifier notices the stream ended", func() bool { return !v.RevocationStats().Connected })
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("after the stream ended: %v", err)
	}
	f.stream() <- heartbeat
	eventually(t, "caught up again", func() bool { _, err := v.Verify(context.Background(), tok); return err == nil })
}

func TestRevocationsNeedACredential(t *testing.T) {
	if _, err := verify.New(context.Background(), "http://127.0.0.1:1", verify.WithJWKSURL("http://127.0.0.1:1/jwks"), verify.InsecureSkipAudienceCheck(), verify.WithRevocations(verify.Revocations{})); err == nil {
		t.Fatal("WithRevocations without a client was accepted")
	}
}
