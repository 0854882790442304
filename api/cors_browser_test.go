package api_test

// TestCORSFromAnotherOrigin drives tokend from a page on a second origin in
// headless Chromium: with CORS_ALLOWED_ORIGINS naming the page's origin the
// browser signs in, refreshes (a JSON body, so with a preflight), logs out
// with an Authorization: Bearer header and revokes; a page on an origin not
// in the list can read nothing and, where a preflight is needed, changes
// nothing. Chromium is found as for TestSwaggerUIRenders.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokend/tokend/server"
)

// corsPage is the second origin's app. The results go into <pre id=out>,
// one line per step, for --dump-dom.
const corsPage = `<!doctype html><html><body><pre id="out"></pre><script>
const tokend = %q, rt0 = %q;
const out = document.getElementById("out");
const log = (s) => { out.textContent += s + "\n"; };
async function step(name, f) {
  try { log(name + " " + await f()); } catch (e) { log(name + " failed " + e.name); }
}
(async () => {
  let rt = "", at = "";
  await step("signin", async () => {
    const r = await fetch(tokend + "/oauth/token", {method: "POST",
      body: new URLSearchParams({grant_type: "password", client_id: "web", username: "alice", password: %q})});
    const j = await r.json(); rt = j.refresh_token || ""; at = j.access_token || "";
    return r.status + " " + (rt ? "refresh_token" : "none") + " request-id=" + (r.headers.get("X-Request-Id") ? "exposed" : "hidden");
  });
  await step("refresh-json", async () => {
    const r = await fetch(tokend + "/oauth/token", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({grant_type: "refresh_token", client_id: "web", refresh_token: rt})});
    const j = await r.json(); rt = j.refresh_token || rt; at = j.access_token || at;
    return r.status;
  });
  await step("logout-bearer", async () => {
    const r = await fetch(tokend + "/logout", {method: "POST", headers: {"Authorization": "Bearer " + at}});
    return r.status;
  });
  await step("refresh-after-logout", async () => {
    const r = await fetch(tokend + "/oauth/token", {method: "POST",
      body: new URLSearchParams({grant_type: "refresh_token", client_id: "web", refresh_token: rt})});
    return r.status + " " + (await r.json()).error;
  });
  await step("revoke", async () => {
    const r = await fetch(tokend + "/oauth/revoke", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({client_id: "web", token: rt0})});
    return r.status;
  });
  log("done");
})();
</script></body></html>`

func TestCORSFromAnotherOrigin(t *testing.T) {
	bin := findChromium(t)
	// The app's own origin: a server of its own on another port.
	var page atomic.Pointer[string] // set here, read by the app's handler
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, *page.Load())
	}))
	defer app.Close()
	e := newEnv(t, sharedRedisStore(t), func(o *server.Options) {
		o.CORSAllowedOrigins = []string{app.URL}
	})
	signIn := func() string {
		resp, err := http.PostForm(e.srv.URL+"/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}})
		must(t, err)
		defer resp.Body.Close()
		var m map[string]any
		must(t, json.NewDecoder(resp.Body).Decode(&m))
		rt, _ := m["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("sign in: %v", m)
		}
		return rt
	}
	refreshes := func(rt string) bool {
		resp, err := http.PostForm(e.srv.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {publicApp}, "refresh_token": {rt}})
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	// 1. From the allowed origin, everything works.
	rt0 := signIn()
	html := fmt.Sprintf(corsPage, e.srv.URL, rt0, testPassword)
	page.Store(&html)
	dom, _ := chromium(t, bin, app.URL, "--dump-dom")
	got := string(dom)
	for _, want := range []string{
		"signin 200 refresh_token request-id=exposed",
		"refresh-json 200",
		"logout-bearer 204",
		"refresh-after-logout 400 invalid_grant",
		"revoke 200",
		"done",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("allowed origin: no %q in the page:\n%s", want, got)
		}
	}
	if refreshes(rt0) {
		t.Error("the browser's revoke did not end the session")
	}

	// 2. From an origin not in the list, the browser reads nothing, and
	// the requests that need a preflight are never sent.
	other := httptest.NewServer(app.Config.Handler)
	defer other.Close()
	rt1 := signIn()
	html2 := fmt.Sprintf(corsPage, e.srv.URL, rt1, testPassword) // a new string: the first may still be read
	page.Store(&html2)
	dom, _ = chromium(t, bin, other.URL, "--dump-dom")
	got = string(dom)
	for _, want := range []string{"signin failed TypeError", "revoke failed TypeError", "done"} {
		if !strings.Contains(got, want) {
			t.Errorf("other origin: no %q in the page:\n%s", want, got)
		}
	}
	if !refreshes(rt1) {
		t.Error("a page on an origin not allowed revoked a session")
	}
}
