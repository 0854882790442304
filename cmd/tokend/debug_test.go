package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Without DEBUG_ADDR there is no pprof anywhere: not on the API port, and
// nothing listens where a debug listener would.
func TestDebugAddrOffByDefault(t *testing.T) {
	base, out := serveFor(t, []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1"}, "--dev")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if status, _ := get(t, base+p); status != http.StatusNotFound {
			t.Errorf("GET %s on HTTP_ADDR = %d, want 404", p, status)
		}
	}
	if strings.Contains(out.String(), "pprof debug listener") {
		t.Errorf("a debug listener started without DEBUG_ADDR:\n%s", out.String())
	}
}

// With DEBUG_ADDR the profiles are served there, and still not on the API
// port.
func TestDebugAddrServesPprof(t *testing.T) {
	debug := freeAddr(t)
	base, out := serveFor(t, []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "DEBUG_ADDR=" + debug}, "--dev")
	status, body := get(t, "http://"+debug+"/debug/pprof/")
	if status != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET /debug/pprof/ on DEBUG_ADDR = %d %.200s", status, body)
	}
	if status, body := get(t, "http://"+debug+"/debug/pprof/heap?debug=1"); status != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile = %d %.200s", status, body)
	}
	if status, _ := get(t, "http://"+debug+"/oauth/token"); status != http.StatusNotFound {
		t.Errorf("the API is served on DEBUG_ADDR: %d", status)
	}
	if status, _ := get(t, base+"/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on HTTP_ADDR = %d, want 404", status)
	}
	if !strings.Contains(out.String(), "pprof debug listener") || !strings.Contains(out.String(), debug) {
		t.Errorf("the debug listener is not logged:\n%s", out.String())
	}
}

// With METRICS_ADDR the metrics are served there, and no longer on the
// API port; without it, on the API port (TestMetrics and the OpenAPI
// conformance test cover that).
func TestMetricsAddr(t *testing.T) {
	metrics := freeAddr(t)
	base, out := serveFor(t, []string{"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "METRICS_ADDR=" + metrics}, "--dev")
	status, body := get(t, "http://"+metrics+"/metrics")
	if status != http.StatusOK || !strings.Contains(body, "tokend_http_requests_total") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics on METRICS_ADDR = %d %.200s", status, body)
	}
	if status, _ := get(t, "http://"+metrics+"/oauth/token"); status != http.StatusNotFound {
		t.Errorf("the API is served on METRICS_ADDR: %d", status)
	}
	if status, body := get(t, base+"/metrics"); status != http.StatusNotFound || !strings.Contains(body, "not_found") {
		t.Errorf("GET /metrics on HTTP_ADDR = %d %s, want the JSON 404", status, body)
	}
	if !strings.Contains(out.String(), "metrics listener on (METRICS_ADDR)") || !strings.Contains(out.String(), metrics) {
		t.Errorf("the metrics listener is not logged:\n%s", out.String())
	}
}
