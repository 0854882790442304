package server_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/servertest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// panicky is a store whose client lookup panics, standing in for any bug.
type panicky struct{ store.Store }

func (panicky) Client(context.Context, string) (store.Client, error) { panic("boom: internal detail") }

// A panic in a handler is a bare RFC-style 500: no stack trace, no panic
// text for the client; the log has it.
func TestPanicIsBare500(t *testing.T) {
	e := newEnv(t, panicky{redisStore(t)}, time.Hour)
	a := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"}})
	wantError(t, a, http.StatusInternalServerError, "server_error", "internal error")
	if strings.Contains(string(a.body), "boom") || strings.Contains(string(a.body), "goroutine") {
		t.Fatalf("panic detail sent to the client: %s", a.body)
	}
	if !strings.Contains(e.logs.String(), "boom: internal detail") {
		t.Fatal("the panic is not in the log")
	}
	// The server keeps serving.
	if h := e.get("/healthz"); h.status != 200 {
		t.Fatalf("after a panic: %d", h.status)
	}
}

// X-Request-Id is echoed when it is plain and short, replaced otherwise,
// so a caller cannot forge log structure through it.
func TestRequestID(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	get := func(id string) string {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/healthz", nil)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		return e.do(req).header.Get("X-Request-Id")
	}
	if got := get("abc-123_x.y"); got != "abc-123_x.y" {
		t.Fatalf("plain id not echoed: %q", got)
	}
	for _, bad := range []string{"", `a"b`, "a b", strings.Repeat("a", 65), "é"} {
		if got := get(bad); got == "" || got == bad || len(got) != 24 {
			t.Fatalf("id %q answered with %q, want a fresh one", bad, got)
		}
	}
}

// The OpenAPI document and Swagger UI are served from the binary.
func TestDocsRoutes(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	spec := e.get("/openapi.yaml")
	if spec.status != 200 || !strings.Contains(string(spec.body), "openapi:") || spec.header.Get("ETag") == "" {
		t.Fatalf("/openapi.yaml: %d %v", spec.status, spec.header)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/openapi.yaml", nil)
	req.Header.Set("If-None-Match", spec.header.Get("ETag"))
	if a := e.do(req); a.status != http.StatusNotModified {
		t.Fatalf("conditional GET: %d", a.status)
	}
	docs := e.get("/docs")
	if docs.status != 200 || !strings.Contains(docs.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("/docs: %d %v", docs.status, docs.header)
	}
	if a := e.get("/docs/swagger-ui-bundle.js"); a.status != 200 {
		t.Fatalf("bundled asset: %d", a.status)
	}
	if a := e.get("/docs/nope.js"); a.status != 404 {
		t.Fatalf("unknown asset: %d", a.status)
	}
	s := e.routes()
	for _, want := range []string{"/oauth/token", "GET /docs", "GET /openapi.yaml", "GET /metrics"} {
		if !slices.Contains(s, want) {
			t.Errorf("Routes() lacks %q: %v", want, s)
		}
	}
}

// A path tokend does not serve (/docs/, an unknown asset, an unknown
// path, sign-up and the feed while off) answers a JSON 404, and a path it
// serves with another method a JSON 405 with Allow, like the OAuth
// endpoints' own errors — never the ServeMux's text/plain.
func TestUnmatchedRoutesAnswerJSON(t *testing.T) {
	e := newEnv(t, newMemStore(t), time.Hour)
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/docs/", 404, "not_found", ""},
		{http.MethodGet, "/docs/nope.js", 404, "not_found", ""},
		{http.MethodGet, "/nope", 404, "not_found", ""},
		{http.MethodPost, "/users", 404, "not_found", ""}, // ALLOW_SIGNUP is off
		{http.MethodGet, "/events", 404, "not_found", ""}, // no event log
		{http.MethodPost, "/healthz", 405, "invalid_request", "GET, HEAD"},
		{http.MethodDelete, "/sessions", 405, "invalid_request", "GET, HEAD"},
		{http.MethodGet, "/oauth/token", 405, "invalid_request", "POST"},
	} {
		req, err := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		must(t, err)
		a := e.do(req)
		if a.status != c.status || a.str("error") != c.code || a.str("error_description") == "" ||
			!strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || a.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %q Allow %q: %s", c.method, c.path, a.status, a.header.Get("Content-Type"), a.header.Get("Allow"), a.body)
		}
	}
}

// stalling is a store whose user lookup waits for the request to be
// cancelled, like a Redis stall that makes the client give up.
type stalling struct {
	store.Store
	entered chan struct{}
}

func (s stalling) UserByName(ctx context.Context, _ string) (store.User, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return store.User{}, ctx.Err()
}

// A client that disconnects is a client close (499 in the log and the
// metrics), not a 500 server_error that trips 5xx alerts.
func TestClientCloseIsNotA5xx(t *testing.T) {
	st := stalling{Store: redisStore(t), entered: make(chan struct{}, 1)}
	e := newEnv(t, st, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/oauth/token", strings.NewReader(url.Values{
		"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-st.entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	// The server logs the request once its handler has returned.
	for i := 0; !strings.Contains(e.logs.String(), `"path":"/oauth/token"`); i++ {
		if i == 1000 {
			t.Fatalf("no request log line: %s", e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"status":499`) || !strings.Contains(logs, `"error":"client_closed_request"`) ||
		strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, "server_error") {
		t.Errorf("log of a client close: %s", logs)
	}
	m := string(e.get("/metrics").body)
	if strings.Contains(m, `code="500"`) || !strings.Contains(m, `code="499"`) {
		t.Errorf("metrics of a client close:\n%s", grepLines(m, "tokend_http_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// New invents no defaults (they are the configuration's): a required
// option that is missing or out of range is an error naming it.
func TestNewRefusesMissingOptions(t *testing.T) {
	set, err := keys.Ephemeral(verify.ES256)
	must(t, err)
	src := token.StaticKeys{Set: set}
	valid := servertest.Defaults(server.Options{
		Store: memstore.New(), Tokens: token.NewIssuer(testIssuer, nil, time.Minute, src), Keys: src,
		Passwords: credential.NewHasher(fastArgon, 0), Issuer: testIssuer,
	})
	if _, err := server.New(valid); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, spoil := range map[string]func(*server.Options){
		"Store":           func(o *server.Options) { o.Store = nil },
		"Tokens":          func(o *server.Options) { o.Tokens = nil },
		"Keys":            func(o *server.Options) { o.Keys = nil },
		"RefreshKeys":     func(o *server.Options) { o.RefreshKeys = nil },
		"Passwords":       func(o *server.Options) { o.Passwords = nil },
		"Logger":          func(o *server.Options) { o.Logger = nil },
		"Issuer":          func(o *server.Options) { o.Issuer = "" },
		"RefreshTTL":      func(o *server.Options) { o.RefreshTTL = 0 },
		"JWKSMaxAge":      func(o *server.Options) { o.JWKSMaxAge = 0 },
		"ReuseWindow":     func(o *server.Options) { o.ReuseWindow = -time.Second },
		"MaxSessions":     func(o *server.Options) { o.MaxSessions = -1 },
		"EventsHeartbeat": func(o *server.Options) { o.EventsHeartbeat = -time.Second },
	} {
		o := valid
		spoil(&o)
		if _, err := server.New(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without a valid %s: %v, want an error naming it", name, err)
		}
	}
}
