package testclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testclient"
)

// The client retries 503 (after Retry-After) and lost answers with the
// same token, stops at invalid_grant, and refuses anything else.
func TestRefreshRetriesAsDocumented(t *testing.T) {
	var calls atomic.Int64
	script := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
		},
		func(w http.ResponseWriter) { fmt.Fprint(w, `{"access_token":"at","refresh_token":"rt_lost"}`) },
		func(w http.ResponseWriter) { fmt.Fprint(w, `{"access_token":"at","refresh_token":"rt_2"}`) },
		func(w http.ResponseWriter) {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"revoked"}`)
		},
		func(w http.ResponseWriter) { w.WriteHeader(500); fmt.Fprint(w, `{"error":"server_error"}`) },
	}
	var presented []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented = append(presented, r.PostFormValue("refresh_token"))
		script[calls.Add(1)-1](w)
	}))
	defer srv.Close()
	lossy := &testclient.LossyTransport{Lose: func(_ *http.Request, _ int, body []byte) bool {
		return string(body) == `{"access_token":"at","refresh_token":"rt_lost"}`
	}}
	var slept []time.Duration
	var attempts []testclient.Attempt
	c := &testclient.Client{
		HTTP: &http.Client{Transport: lossy}, ClientID: "web",
		TokenURL: func(int) string { return srv.URL },
		Sleep:    func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		Observe:  func(a testclient.Attempt) { attempts = append(attempts, a) },
	}
	ctx := context.Background()
	res, err := c.Refresh(ctx, "rt_1")
	if err != nil || res.Token != "rt_2" || res.Attempts != 3 || res.Unavailable != 1 || res.Network != 1 {
		t.Fatalf("refresh: %+v %v", res, err)
	}
	if fmt.Sprint(presented) != "[rt_1 rt_1 rt_1]" || fmt.Sprint(slept) != "[1s 100ms]" || len(lossy.Lost()) != 1 || len(attempts) != 3 {
		t.Fatalf("presented %v, slept %v, lost %d, observed %d", presented, slept, len(lossy.Lost()), len(attempts))
	}
	if res, err := c.Refresh(ctx, "rt_2"); err != nil || !res.Ended || res.Reason != "revoked" {
		t.Fatalf("invalid_grant: %+v %v", res, err)
	}
	if _, err := c.Refresh(ctx, "rt_3"); err == nil {
		t.Fatal("a 500 was taken in stride")
	}
}
