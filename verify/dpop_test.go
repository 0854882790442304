package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/verify"
	"github.com/tokend/tokend/verify/dpop"
)

// dpopChallenge matches a WWW-Authenticate DPoP challenge with an error
// (RFC 9449 §7.1) whose quoted values RFC 6750 §3 allows.
var dpopChallenge = regexp.MustCompile(`^DPoP error="(invalid_request|invalid_token|insufficient_scope|invalid_dpop_proof|use_dpop_nonce)", error_description="[\x20\x21\x23-\x5B\x5D-\x7E]+", algs="[A-Za-z0-9 ]+"$`)

const apiURL = "https://api.example.com"

// holder is a client with a DPoP key and a token bound to it.
type holder struct {
	key *ecdsa.PrivateKey
	jkt string
	tok string
}

func newHolder(t *testing.T, f *fakeIssuer) *holder {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := dpop.Thumbprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	c := defaultClaims
	c.JKT = jkt
	return &holder{key: k, jkt: jkt, tok: f.mint(t, c)}
}

// proof makes a proof for method and path of the API, at the issuer's clock.
func (h *holder) proof(t *testing.T, f *fakeIssuer, method, path, nonce string) string {
	t.Helper()
	p, err := dpop.NewProof(h.key, method, apiURL+path, h.tok, nonce, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request is a request to the API with headers as key, value pairs.
func request(method, path string, kv ...string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func serve(h http.Handler, r *http.Request) result {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	res := result{status: rec.Code, header: rec.Header()}
	b, _ := io.ReadAll(rec.Body)
	_ = json.Unmarshal(b, &res.body)
	return res
}

// okHandler answers 200 with the token's jkt.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.ClaimsFrom(r.Context())
	_, _ = io.WriteString(w, c.Confirmation.JKT)
})

// failingReplay is a replay cache that cannot answer.
type failingReplay struct{}

func (failingReplay) Seen(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("redis: connection refused")
}

func TestDPoPMiddleware(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	v := newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL + "/"}))
	h := v.Middleware(okHandler)
	a := newHolder(t, f)
	unbound := f.mint(t, defaultClaims)

	// The bound token with its proof: accepted once.
	proof := a.proof(t, f, "GET", "/orders/1", "")
	r := serve(h, request("GET", "/orders/1?x=1", "Authorization", "DPoP "+a.tok, "DPoP", proof))
	if r.status != http.StatusOK {
		t.Fatalf("bound token with its proof: %d %v %v", r.status, r.header, r.body)
	}
	r = serve(h, request("GET", "/orders/1", "Authorization", "DPoP "+a.tok, "DPoP", proof))
	wantProofRefused(t, r, "invalid_dpop_proof", "used before")

	// An unbound token under Bearer, as before; the challenge to a
	// request without a token names both schemes (RFC 9449 §7.1).
	if r := serve(h, request("GET", "/orders", "Authorization", "Bearer "+unbound)); r.status != http.StatusOK {
		t.Fatalf("unbound under Bearer: %d", r.status)
	}
	r = serve(h, request("GET", "/orders"))
	if ch := r.header.Values("WWW-Authenticate"); r.status != 401 || len(ch) != 2 || ch[0] != "Bearer" || ch[1] != `DPoP algs="ES256 EdDSA"` {
		t.Fatalf("no token: %d %q", r.status, ch)
	}

	b := newHolder(t, f)
	for _, c := range []struct {
		name         string
		req          *http.Request
		code, reason string
	}{
		{"a bound token under Bearer", request("GET", "/orders", "Authorization", "Bearer "+a.tok, "DPoP", a.proof(t, f, "GET", "/orders", "")),
			"invalid_token", "DPoP-bound"},
		{"an unbound token under DPoP", request("GET", "/orders", "Authorization", "DPoP "+unbound, "DPoP", a.proof(t, f, "GET", "/orders", "")),
			"invalid_token", "not DPoP-bound"},
		{"no proof", request("GET", "/orders", "Authorization", "DPoP "+a.tok),
			"invalid_dpop_proof", "exactly one DPoP header"},
		{"two proofs", request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/orders", ""), "DPoP", a.proof(t, f, "GET", "/orders", "")),
			"invalid_dpop_proof", "exactly one DPoP header"},
		{"a proof for another path", request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/admin", "")),
			"invalid_dpop_proof", "htu"},
		{"a proof for another method", request("DELETE", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/orders", "")),
			"invalid_dpop_proof", "htm"},
		{"a proof for another token", request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", mustProof(t, a, f, "GET", apiURL+"/orders", "other")),
			"invalid_dpop_proof", "ath"},
		{"a proof by another key", request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", mustProof(t, b, f, "GET", apiURL+"/orders", a.tok)),
			"invalid_token", "not signed by the key the access token is bound to"},
		{"a stale proof", request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", mustProofAt(t, a, "GET", apiURL+"/orders", a.tok, f.clock.Now().Add(-2*time.Minute))),
			"invalid_dpop_proof", "too old"},
		// The Host and X-Forwarded-* headers are the client's: the htu is
		// this service's configured URL, whatever they say.
		{"a proof for the Host the client sent", func() *http.Request {
			r := request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", mustProof(t, a, f, "GET", "https://evil.example/orders", a.tok),
				"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")
			r.Host = "evil.example"
			return r
		}(), "invalid_dpop_proof", "htu"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := serve(h, c.req)
			wantProofRefused(t, r, c.code, c.reason)
		})
	}

	// Expired, with a valid proof: Token-Expired, on the DPoP challenge.
	f.clock.Advance(time.Hour)
	r = serve(h, request("GET", "/orders", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/orders", "")))
	wantProofRefused(t, r, "invalid_token", "expired")
	if r.header.Get("Token-Expired") != "true" {
		t.Fatalf("expired: %v", r.header)
	}
}

func mustProof(t *testing.T, h *holder, f *fakeIssuer, method, url, tok string) string {
	return mustProofAt(t, h, method, url, tok, f.clock.Now())
}

func mustProofAt(t *testing.T, h *holder, method, url, tok string, at time.Time) string {
	t.Helper()
	p, err := dpop.NewProof(h.key, method, url, tok, "", at)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantProofRefused: 401 with the error code on a DPoP challenge (or, for
// invalid_token under Bearer, a Bearer one beside DPoP's algs).
func wantProofRefused(t *testing.T, r result, code, reason string) {
	t.Helper()
	ch := r.header.Values("WWW-Authenticate")
	desc, _ := r.body["error_description"].(string)
	if r.status != http.StatusUnauthorized || r.body["error"] != code || !strings.Contains(desc, reason) || len(ch) == 0 {
		t.Fatalf("%d %v %v, want 401 %s (%s)", r.status, r.header, r.body, code, reason)
	}
	if !dpopChallenge.MatchString(ch[0]) && !(rfc6750Challenge.MatchString(ch[0]) && len(ch) == 2 && ch[1] == `DPoP algs="ES256 EdDSA"`) {
		t.Fatalf("challenge %q", ch)
	}
	if !strings.Contains(ch[0], `error="`+code+`"`) {
		t.Fatalf("challenge %q, want %s", ch, code)
	}
}

func TestDPoPOptions(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	a := newHolder(t, f)
	unbound := f.mint(t, defaultClaims)

	// Require: Bearer tokens are refused, and the challenges name DPoP
	// alone (RFC 9449 §7.2).
	v := newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL, Require: true}))
	h := v.Middleware(okHandler)
	r := serve(h, request("GET", "/x", "Authorization", "Bearer "+unbound))
	if ch := r.header.Values("WWW-Authenticate"); r.status != 401 || len(ch) != 1 || !dpopChallenge.MatchString(ch[0]) ||
		r.body["error_description"] != "this service accepts only DPoP-bound access tokens" {
		t.Fatalf("required: %d %q %v", r.status, ch, r.body)
	}
	if ch := serve(h, request("GET", "/x")).header.Values("WWW-Authenticate"); len(ch) != 1 || ch[0] != `DPoP algs="ES256 EdDSA"` {
		t.Fatalf("required, no token: %q", ch)
	}
	if r := serve(h, request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", ""))); r.status != 200 {
		t.Fatalf("required, bound: %d %v", r.status, r.body)
	}

	// RequestURL replaces PublicURL.
	v = newVerifier(t, f, verify.WithDPoP(verify.DPoP{RequestURL: func(r *http.Request) string { return "https://other.example" + r.URL.Path }}))
	if r := serve(v.Middleware(okHandler), request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", mustProof(t, a, f, "GET", "https://other.example/x", a.tok))); r.status != 200 {
		t.Fatalf("RequestURL: %d %v", r.status, r.body)
	}

	// A replay cache that cannot answer: 503, never accepted unchecked.
	v = newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL, Replay: failingReplay{}}))
	r = serve(v.Middleware(okHandler), request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", "")))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "temporarily_unavailable" {
		t.Fatalf("replay cache down: %d %v %v", r.status, r.header, r.body)
	}

	// Resource-server nonces (RFC 9449 §9).
	nonces, err := dpop.NewNonces([][]byte{[]byte("0123456789abcdef")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v = newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL, Nonces: nonces}))
	h = v.Middleware(okHandler)
	r = serve(h, request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", "")))
	wantProofRefused(t, r, "use_dpop_nonce", "nonce")
	nonce := r.header.Get("DPoP-Nonce")
	if nonce != nonces.Current(f.clock.Now()) {
		t.Fatalf("DPoP-Nonce %q", nonce)
	}
	r = serve(h, request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", nonce)))
	if r.status != 200 || r.header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("with the nonce: %d %v", r.status, r.header)
	}

	// A scope missing from a DPoP token: the 403 names DPoP.
	v = newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL}))
	r = serve(v.Middleware(verify.RequireScope("admin")(okHandler)), request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", "")))
	if r.status != 403 || r.header.Get("WWW-Authenticate") != `DPoP error="insufficient_scope", error_description="the access token lacks the scope admin", scope="admin"` {
		t.Fatalf("scope: %d %v", r.status, r.header)
	}

	// Without WithDPoP, a bound token is refused under either scheme.
	v = newVerifier(t, f)
	h = v.Middleware(okHandler)
	for _, req := range []*http.Request{
		request("GET", "/x", "Authorization", "Bearer "+a.tok),
		request("GET", "/x", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "GET", "/x", "")),
	} {
		if r := serve(h, req); r.status != 401 || r.body["error"] != "invalid_token" || !rfc6750Challenge.MatchString(r.header.Get("WWW-Authenticate")) {
			t.Fatalf("no DPoP: %d %v %v", r.status, r.header, r.body)
		}
	}

	// Options are checked.
	for _, d := range []verify.DPoP{
		{},
		{PublicURL: apiURL, RequestURL: func(*http.Request) string { return "" }},
		{PublicURL: "api.example.com"},
		{PublicURL: apiURL + "/?x"},
		{PublicURL: apiURL, Algorithms: []string{"HS256"}},
	} {
		if _, err := verify.New(context.Background(), f.url, verify.WithAudience("orders"), verify.WithDPoP(d)); err == nil {
			t.Errorf("DPoP %+v accepted", d)
		}
	}
}

// Verify alone never accepts a bound token as a bearer one: its proof is
// part of the request. AllowBoundTokens is for a caller that reports the
// binding (introspection) or checks the proof itself.
func TestVerifyBoundToken(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	a := newHolder(t, f)
	v := newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL}))
	if _, err := v.Verify(context.Background(), a.tok); !errors.Is(err, verify.ErrInvalid) || !strings.Contains(err.Error(), "DPoP-bound") {
		t.Fatalf("Verify of a bound token: %v", err)
	}
	v = newVerifier(t, f, verify.AllowBoundTokens())
	c, err := v.Verify(context.Background(), a.tok)
	if err != nil || c.Confirmation.JKT != a.jkt {
		t.Fatalf("AllowBoundTokens: %v %+v", err, c)
	}
	// VerifyRequest, outside a middleware.
	v = newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: apiURL}))
	c, err = v.VerifyRequest(request("POST", "/y", "Authorization", "DPoP "+a.tok, "DPoP", a.proof(t, f, "POST", "/y", "")))
	if err != nil || c.Confirmation.JKT != a.jkt || c.Subject != "user-1" {
		t.Fatalf("VerifyRequest: %v %+v", err, c)
	}
	for _, c := range []struct {
		req  *http.Request
		want error
	}{
		{request("GET", "/"), verify.ErrNoToken},
		{request("GET", "/", "Authorization", "DPoP"), verify.ErrMalformed},
		{request("GET", "/", "Authorization", "Bearer a", "Authorization", "Bearer b"), verify.ErrMalformed},
		{request("GET", "/", "Authorization", "DPoP "+a.tok), dpop.ErrInvalidProof},
		{request("GET", "/", "Authorization", "Basic eDp5"), verify.ErrInvalid},
	} {
		if _, err := v.VerifyRequest(c.req); !errors.Is(err, c.want) {
			t.Errorf("%v: %v, want %v", c.req.Header, err, c.want)
		}
	}
}

// A client with dpop.Transport and a service behind Middleware, with
// nonces: the proofs one makes, the other accepts.
func TestTransportAgainstMiddleware(t *testing.T) {
	f := newFakeIssuer(t, verify.EdDSA)
	a := newHolder(t, f)
	nonces, _ := dpop.NewNonces([][]byte{[]byte("0123456789abcdef")}, time.Minute)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	v := newVerifier(t, f, verify.WithDPoP(verify.DPoP{PublicURL: srv.URL, Nonces: nonces}))
	mux.Handle("/", v.Middleware(okHandler))
	client := &http.Client{Transport: &dpop.Transport{
		Key: a.key, Token: func(*http.Request) (string, error) { return a.tok, nil }, Now: f.clock.Now,
	}}
	for i := 0; i < 3; i++ {
		resp, err := client.Post(srv.URL+"/orders?page=2", "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != a.jkt {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
}
