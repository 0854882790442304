package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store/storemetrics"
)

// scrape reads GET /metrics into "name{labels}" → value (the exposition
// format prints label names sorted).
func (e *env) scrape() map[string]float64 {
	e.t.Helper()
	a := e.get("/metrics")
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("GET /metrics: %d %v", a.status, a.header)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(a.body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// After a scripted run, /metrics shows every kind of event moved: requests
// by route pattern (never a raw path), grant outcomes, reuse by cause,
// rate-limit refusals and store latency. The server uses the registry it
// is given and nothing of the global default registry.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := storemetrics.Wrap(redisStore(t), reg)
	must(t, err)
	e := newEnv(t, st, time.Hour, withProxies("127.0.0.1/32"), func(o *server.Options) {
		o.Metrics = reg
		o.LoginLimiter = ratelimit.NewMemory(ratelimit.Limits{PerAccount: ratelimit.Rate{N: 2, Period: time.Hour}}, ratelimit.MemoryOptions{})
	})
	before := e.scrape()

	a := e.signIn()
	b := e.refresh(a.str("refresh_token")) // rotated
	e.refresh(a.str("refresh_token"))      // retried: within the window
	e.refresh(b.str("refresh_token"))      // rotated
	e.refresh(a.str("refresh_token"))      // reuse by refresh: its child was used
	c := e.signIn()
	e.refresh(c.str("refresh_token")) // rotated
	e.clock.Advance(defaultReuseWindow)
	e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {c.str("refresh_token")}}) // reuse by logout: window over
	d := e.signIn()
	e.refresh(e.derive(d.str("refresh_token"), 1)) // recovered: genuine, ahead of the store
	for i := 0; i < 3; i++ {                       // 2 failures, then 429
		e.post("/oauth/token", passwordForm("mallory", "guess"))
	}
	e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, backendApp, e.secret)
	e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {publicApp}})
	e.postJSON("/oauth/token", `["not an object"]`)
	e.post("/oauth/introspect", url.Values{"token": {b.str("access_token")}}, backendApp, e.secret)
	e.get("/docs/secret-file-1234.js")
	e.get("/no/such/path/5678")

	after := e.scrape()
	delta := func(series string) float64 { return after[series] - before[series] }
	for series, want := range map[string]float64{
		`tokend_grants_total{grant="password",outcome="success"}`:                   3,
		`tokend_grants_total{grant="password",outcome="invalid_grant"}`:             2,
		`tokend_grants_total{grant="password",outcome="slow_down"}`:                 1,
		`tokend_grants_total{grant="refresh_token",outcome="success"}`:              5,
		`tokend_grants_total{grant="refresh_token",outcome="invalid_grant"}`:        1,
		`tokend_grants_total{grant="client_credentials",outcome="success"}`:         1,
		`tokend_grants_total{grant="other",outcome="unsupported_grant_type"}`:       1,
		`tokend_grants_total{grant="none",outcome="invalid_request"}`:               1,
		`tokend_refresh_reuse_detected_total{cause="child_used",via="refresh"}`:     1,
		`tokend_refresh_reuse_detected_total{cause="window_expired",via="refresh"}`: 0,
		`tokend_refresh_reuse_detected_total{cause="child_used",via="logout"}`:      0,
		`tokend_refresh_reuse_detected_total{cause="window_expired",via="logout"}`:  1,
		`tokend_refresh_rotations_total{outcome="rotated"}`:                         3,
		`tokend_refresh_rotations_total{outcome="retried"}`:                         1,
		`tokend_refresh_rotations_total{outcome="recovered"}`:                       1,
		`tokend_login_rate_limited_total{limit="account"}`:                          1,
		`tokend_login_rate_limited_total{limit="ip"}`:                               0,
		`tokend_http_requests_total{code="200",route="/oauth/token"}`:               9,
		`tokend_http_requests_total{code="400",route="/oauth/token"}`:               5,
		`tokend_http_requests_total{code="429",route="/oauth/token"}`:               1,
		`tokend_http_requests_total{code="400",route="/logout"}`:                    1,
		`tokend_http_requests_total{code="200",route="/oauth/introspect"}`:          1,
		`tokend_http_requests_total{code="404",route="GET /docs/{file}"}`:           1,
		`tokend_http_requests_total{code="404",route="unmatched"}`:                  1,
		`tokend_http_request_duration_seconds_count{route="/oauth/token"}`:          15,
		`tokend_store_operation_duration_seconds_count{operation="rotate"}`:         6,
		`tokend_store_operation_duration_seconds_count{operation="create_session"}`: 3,
		`tokend_store_operation_duration_seconds_count{operation="user_by_name"}`:   6, // the 429 names its account
		`tokend_store_errors_total{operation="rotate"}`:                             0,
	} {
		if _, ok := after[series]; !ok {
			t.Errorf("%s: no such series", series)
		} else if got := delta(series); got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	if after[`tokend_http_requests_total{code="200",route="GET /metrics"}`] < 1 {
		t.Errorf("the scrape itself was not counted")
	}
	for series := range after {
		if strings.Contains(series, "secret-file") || strings.Contains(series, "5678") {
			t.Errorf("a raw path became a label: %s", series)
		}
	}

	// Nothing went to the global registry: a second server in the same
	// process registers the same names without a clash.
	mfs, err := prometheus.DefaultGatherer.Gather()
	must(t, err)
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "tokend_") {
			t.Errorf("%s is in the default registry", mf.GetName())
		}
	}
	other := newEnv(t, redisStore(t), time.Hour)
	if m := other.scrape(); m[`tokend_grants_total{grant="password",outcome="success"}`] != 0 {
		t.Errorf("a second server shares the first one's counters")
	}
}

// Every audit event (docs/operations.md, "Logs and what to watch") is one structured line with the user, the
// client, the session and the client's address. It is the request's own
// log line: one line per request, msg "audit", with the request fields.
func TestAuditEvents(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour, withProxies("127.0.0.1/32"), func(o *server.Options) {
		o.LoginLimiter = ratelimit.NewMemory(ratelimit.Limits{PerAccountIP: ratelimit.Rate{N: 1, Period: time.Hour}}, ratelimit.MemoryOptions{})
	})
	ip := xff("203.0.113.77")
	signIn := func() answer { return e.postFrom("/oauth/token", passwordForm(testUser, testPassword), ip) }
	a := signIn()
	refresh := func(rt string) answer {
		return e.postFrom("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}}, ip)
	}
	a1 := refresh(a.str("refresh_token"))
	refresh(a.str("refresh_token")) // within the window: refresh.retry
	refresh(a1.str("refresh_token"))
	refresh(a.str("refresh_token"))                     // its child was used: refresh.reuse_detected
	refresh(a.str("refresh_token"))                     // now revoked: refresh.failure
	refresh(e.derive(signIn().str("refresh_token"), 1)) // ahead of the store: refresh.recovered
	refresh(tamper(a.str("refresh_token")))             // refresh.invalid
	b := signIn()
	e.postFrom("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {b.str("refresh_token")}}, ip)
	c := signIn()
	e.postFrom("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {c.str("refresh_token")}}, ip)
	e.postFrom("/oauth/token", passwordForm(testUser, "wrong"), ip)
	e.postFrom("/oauth/token", passwordForm(testUser, "wrong"), ip) // rate limited

	need := map[string][]string{
		"signin.success":         {"user_id", "client_id", "session_id", "ip"},
		"refresh":                {"user_id", "client_id", "session_id", "ip"},
		"refresh.retry":          {"user_id", "client_id", "session_id", "ip"},
		"refresh.recovered":      {"user_id", "client_id", "session_id", "ip"},
		"refresh.reuse_detected": {"user_id", "client_id", "session_id", "ip", "via", "cause"},
		"refresh.invalid":        {"ip", "reason"},
		"refresh.failure":        {"user_id", "client_id", "session_id", "ip", "reason"},
		"revoke":                 {"user_id", "client_id", "session_id", "ip"},
		"logout":                 {"user_id", "client_id", "session_id", "ip"},
		"signin.failure":         {"user_id", "username", "client_id", "ip", "reason"},
		"signin.rate_limited":    {"user_id", "username", "client_id", "ip", "limit"},
	}
	seen := map[string]bool{}
	perRequest := map[string]int{}
	requests := 0
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if id, _ := m["request_id"].(string); id != "" {
			perRequest[id]++
		}
		if m["msg"] == "request" || m["msg"] == "audit" {
			requests++
		}
		if strings.Count(line, `"ip":`) > 1 || strings.Count(line, `"request_id":`) > 1 {
			t.Errorf("a key appears twice: %s", line)
		}
		if m["msg"] != "audit" {
			continue
		}
		if m["method"] != "POST" || m["path"] == nil || m["status"] == nil || m["duration"] == nil {
			t.Errorf("audit line without the request fields: %s", line)
		}
		ev, _ := m["event"].(string)
		seen[ev] = true
		for _, k := range append(need[ev], "request_id") {
			if v, _ := m[k].(string); v == "" {
				t.Errorf("audit %s has no %s: %s", ev, k, line)
			}
		}
		if m["ip"] != "203.0.113.77" {
			t.Errorf("audit %s: ip %v, want the client's", ev, m["ip"])
		}
	}
	for ev := range need {
		if !seen[ev] {
			t.Errorf("no %s audit event", ev)
		}
	}
	const sent = 15 // the requests above
	if requests != sent || len(perRequest) != sent {
		t.Errorf("%d request lines for %d request ids, want %d each", requests, len(perRequest), sent)
	}
	for id, n := range perRequest {
		if n != 1 {
			t.Errorf("request %s wrote %d log lines, want 1", id, n)
		}
	}
}

// An audit event with no request around it (or a second one in the same
// request) is still written, as a line of its own.
func TestAuditOutsideRequest(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	server.AuditForTest(log, context.Background(), "test.event", slog.String("user_id", "u1"))
	if got := buf.String(); !strings.Contains(got, `"msg":"audit"`) || !strings.Contains(got, `"event":"test.event"`) || !strings.Contains(got, `"user_id":"u1"`) {
		t.Fatalf("audit line %q", got)
	}
}

// reuseTotal sums tokend_refresh_reuse_detected_total over its labels.
func reuseTotal(m map[string]float64) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, "tokend_refresh_reuse_detected_total{") {
			n += v
		}
	}
	return n
}
