package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store/memstore"
)

// FuzzTokenRequest drives POST /oauth/token through the real handler
// (middleware included) with arbitrary form and JSON bodies and
// Authorization headers: the answer is never a 5xx and always a JSON
// object, with the no-store headers. The embedded store and a rate limiter
// keep every path reachable and fast.
func FuzzTokenRequest(f *testing.F) {
	st := memstore.New()
	f.Cleanup(func() { st.Close() })
	e := newEnv(f, st, time.Hour, func(o *server.Options) {
		o.LoginLimiter = ratelimit.NewMemory(ratelimit.Limits{
			PerAccount: ratelimit.Rate{N: 5, Period: time.Minute}, PerIP: ratelimit.Rate{N: 1000, Period: time.Minute},
		}, ratelimit.MemoryOptions{MaxKeys: 1024})
	})
	h := e.srv.Config.Handler
	rt := e.signIn().str("refresh_token")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(backendApp+":"+e.secret))

	f.Add(false, "grant_type=password&client_id=web&username=alice&password=correct+horse+battery+staple", "")
	f.Add(true, `{"grant_type":"password","client_id":"web","username":"alice","password":"correct horse battery staple","scope":"read"}`, "")
	f.Add(false, "grant_type=refresh_token&client_id=web&refresh_token="+rt, "")
	f.Add(true, `{"grant_type":"refresh_token","client_id":"web","refresh_token":"`+rt+`","scope":"read write"}`, "")
	f.Add(false, "grant_type=client_credentials&scope=read", basic)
	f.Add(false, "grant_type=client_credentials&client_id=backend", basic)
	f.Add(false, "grant_type=password&username=alice&password=x", "Basic !!!")
	f.Add(false, "grant_type=password&grant_type=password", "")
	f.Add(false, "%zz=1", "")
	f.Add(true, `{"grant_type":["password"]}`, "")
	f.Add(true, `[1,2,3]`, "")
	f.Add(true, `null`, "")
	f.Add(true, `{"grant_type":"password","client_id":"web","username":"\u0000","password":"\ud800"}`, "")
	f.Add(false, "grant_type=refresh_token&client_id=web&refresh_token=rt_"+strings.Repeat("a", 97), "Bearer x")
	f.Add(false, "", "")
	f.Fuzz(func(t *testing.T, isJSON bool, body, authorization string) {
		req := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		if isJSON {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q (auth %q): %s", rec.Code, body, authorization, rec.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("status %d, body is not a JSON object: %q", rec.Code, rec.Body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", rec.Header())
		}
		if rec.Code != 200 && m["error"] == nil {
			t.Fatalf("status %d without an error code: %s", rec.Code, rec.Body)
		}
	})
}
