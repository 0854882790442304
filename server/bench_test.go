package server_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/clientcache"
)

// Handler micro-benchmarks: the real handler over real Redis, in process
// (no network between client and handler), one request per iteration, with
// the client cache serve uses. TOKEND_BENCH_CLIENT_CACHE=0 turns the cache
// off, for before/after comparisons.

func benchStore(b *testing.B) store.Store {
	st := redisStore(b)
	if os.Getenv("TOKEND_BENCH_CLIENT_CACHE") == "0" {
		return st
	}
	return clientcache.Wrap(st, 10*time.Second)
}

func serveForm(h http.Handler, path, form, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func BenchmarkRefreshGrant(b *testing.B) {
	e := newEnv(b, benchStore(b), 24*time.Hour)
	h := e.srv.Config.Handler
	rt := e.signIn().str("refresh_token")
	b.ReportAllocs()
	for b.Loop() {
		rec := serveForm(h, "/oauth/token", "grant_type=refresh_token&client_id=web&refresh_token="+rt, "")
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		body := rec.Body.String()
		i := strings.Index(body, `"refresh_token":"`) + len(`"refresh_token":"`)
		rt = body[i : i+strings.IndexByte(body[i:], '"')]
	}
}

func BenchmarkClientCredentialsGrant(b *testing.B) {
	e := newEnv(b, benchStore(b), 24*time.Hour)
	h := e.srv.Config.Handler
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(backendApp+":"+e.secret))
	b.ReportAllocs()
	for b.Loop() {
		if rec := serveForm(h, "/oauth/token", "grant_type=client_credentials&scope=read", auth); rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkIntrospect(b *testing.B) {
	e := newEnv(b, benchStore(b), 24*time.Hour)
	h := e.srv.Config.Handler
	at := e.signIn().str("access_token")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(backendApp+":"+e.secret))
	b.ReportAllocs()
	for b.Loop() {
		if rec := serveForm(h, "/oauth/introspect", "token="+at, auth); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"active":true`) {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkRefreshGrantParallel runs refresh chains from GOMAXPROCS×8
// goroutines, each rotating its own session, as the load benchmark does.
func BenchmarkRefreshGrantParallel(b *testing.B) {
	e := newEnv(b, benchStore(b), 24*time.Hour)
	h := e.srv.Config.Handler
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		rt := e.signIn().str("refresh_token")
		for pb.Next() {
			rec := serveForm(h, "/oauth/token", "grant_type=refresh_token&client_id=web&refresh_token="+rt, "")
			if rec.Code != 200 {
				b.Errorf("%d %s", rec.Code, rec.Body)
				return
			}
			body := rec.Body.String()
			i := strings.Index(body, `"refresh_token":"`) + len(`"refresh_token":"`)
			rt = body[i : i+strings.IndexByte(body[i:], '"')]
		}
	})
}
