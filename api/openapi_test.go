package api_test

// The OpenAPI document is a contract, checked against the real server in
// both directions:
//
//   - TestOpenAPIRoutesMatchServer: every route the server's router serves
//     (server.Routes) is a documented operation, and every documented
//     operation is served;
//   - TestOpenAPIConformance: every documented operation is driven over HTTP
//     (httptest over a real Redis store), each request and each response
//     validated with kin-openapi's openapi3filter, errors included; every
//     documented status (except 500) must have been seen.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store/redisstore"
)

// loadDoc parses and validates the embedded document, examples included.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.Spec().Data)
	if err != nil {
		t.Fatalf("api/openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func init() {
	// Bodies the validator should read as text (it knows JSON, forms, YAML
	// and text/plain already).
	for _, ct := range []string{"text/html", "text/css", "text/javascript"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi: %s, want 3.1", doc.OpenAPI)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s: needs an operationId and a summary", name)
			}
			if op.Security == nil {
				t.Errorf("%s: says nothing about security (use security: [] for none)", name)
			}
			for status, rr := range op.Responses.Map() {
				for ct, mt := range rr.Value.Content {
					if mt.Example == nil && len(mt.Examples) == 0 {
						t.Errorf("%s %s %s: response has no example", name, status, ct)
					}
				}
			}
			if op.RequestBody != nil {
				for ct, mt := range op.RequestBody.Value.Content {
					if mt.Example == nil && len(mt.Examples) == 0 {
						t.Errorf("%s %s: request body has no example", name, ct)
					}
				}
				// Every OAuth-style body is accepted as a form and as JSON (docs/design.md, "Decisions of our own").
				c := op.RequestBody.Value.Content
				if c.Get("application/x-www-form-urlencoded") == nil || c.Get("application/json") == nil {
					t.Errorf("%s: request body must be documented as form and as JSON", name)
				}
			}
		}
	}
	ss := doc.Components.SecuritySchemes
	if s := ss["clientSecretBasic"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "basic" {
		t.Errorf("securitySchemes.clientSecretBasic must be HTTP Basic: %+v", s)
	}
	if s := ss["bearerAuth"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" || s.Value.BearerFormat != "JWT" {
		t.Errorf("securitySchemes.bearerAuth must be HTTP Bearer, format JWT: %+v", s)
	}
	// /docs/{file} lists exactly the assets the binary carries.
	p := doc.Paths.Value("/docs/{file}").Get.Parameters.GetByInAndName("path", "file")
	var enum []string
	for _, v := range p.Schema.Value.Enum {
		enum = append(enum, v.(string))
	}
	names := api.DocsAssetNames()
	slices.Sort(enum)
	slices.Sort(names)
	if !slices.Equal(enum, names) {
		t.Errorf("/docs/{file} documents %v, the binary serves %v", enum, names)
	}
}

// routePath turns a net/http pattern's path into an OpenAPI path template:
// {name...} becomes {name}; {$} (exact match of a trailing slash) goes.
var wildcard = regexp.MustCompile(`\{([^}.]+)(\.\.\.)?\}`)

func routePath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return wildcard.ReplaceAllString(p, "{$1}")
}

// methodlessMethods are the methods a pattern without a method must have
// documented: tokend's method-less handlers accept POST only (405 else).
var methodlessMethods = []string{http.MethodPost}

// compareRoutes returns the differences between the router's patterns and
// the document's operations, in both directions.
func compareRoutes(doc *openapi3.T, patterns []string) []string {
	var problems []string
	type route struct{ method, path string }
	var served []route
	for _, pat := range patterns {
		method, path, ok := strings.Cut(pat, " ")
		if !ok {
			method, path = "", pat
		}
		if i := strings.IndexByte(path, '/'); i != 0 {
			problems = append(problems, fmt.Sprintf("route %q: host-specific patterns cannot be documented", pat))
			continue
		}
		if strings.HasSuffix(path, "/") && path != "/" {
			problems = append(problems, fmt.Sprintf("route %q serves a whole subtree, which OpenAPI cannot describe; use {name} or {$}", pat))
			continue
		}
		path = routePath(path)
		served = append(served, route{method, path})
		item := doc.Paths.Value(path)
		if item == nil {
			problems = append(problems, fmt.Sprintf("the router serves %q but api/openapi.yaml has no path %s", pat, path))
			continue
		}
		methods := []string{method}
		if method == "" {
			methods = methodlessMethods
		}
		for _, m := range methods {
			if item.GetOperation(m) == nil {
				problems = append(problems, fmt.Sprintf("the router serves %q but api/openapi.yaml has no %s %s", pat, m, path))
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !slices.ContainsFunc(served, func(r route) bool {
				return r.path == path && (r.method == method || r.method == "" ||
					r.method == http.MethodGet && method == http.MethodHead)
			}) {
				problems = append(problems, fmt.Sprintf("api/openapi.yaml documents %s %s, which the router does not serve", method, path))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func TestOpenAPIRoutesMatchServer(t *testing.T) {
	doc := loadDoc(t)
	e := newEnv(t, sharedRedisStore(t))
	routes := e.server.Routes()
	if len(routes) == 0 {
		t.Fatal("server.Routes() lists nothing")
	}
	for _, p := range compareRoutes(doc, routes) {
		t.Error(p)
	}

	// A method-less pattern answers 405 to the methods the document does
	// not list, so "documented POST" is really all it serves.
	for _, pat := range routes {
		if strings.Contains(pat, " ") {
			continue
		}
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			req, err := http.NewRequest(m, e.srv.URL+pat, nil)
			must(t, err)
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405 (undocumented method)", m, pat, resp.StatusCode)
			}
		}
	}

	// The comparison itself notices drift in both directions.
	got := compareRoutes(doc, append(slices.Clone(routes), "GET /admin/secrets", "/oauth/extra"))
	for _, want := range []string{"GET /admin/secrets", "/oauth/extra"} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("an undocumented route %q went unnoticed: %v", want, got)
		}
	}
	var fewer []string
	for _, r := range routes {
		if r != "GET /healthz" {
			fewer = append(fewer, r)
		}
	}
	if got := compareRoutes(doc, fewer); !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, "GET /healthz") }) {
		t.Errorf("a documented but unserved operation went unnoticed: %v", got)
	}
}

// validity is what a test expects of a request against the document.
type validity int

const (
	valid   validity = iota // the document accepts the request
	invalid                 // the document rejects it (and so must the server)
	anyBody                 // not checked (e.g. a 10 MiB body)
)

// call is one request of the conformance test.
type call struct {
	method, path string
	ctype        string // request Content-Type
	body         string
	basic        [2]string // client_secret_basic id and secret
	header       http.Header
	req          validity
	status       int    // expected status
	oauthErr     string // expected "error", if any
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func jsonBody(kv ...string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// result is a response of the conformance test.
type result struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r result) str(k string) string { s, _ := r.json[k].(string); return s }

// checker sends calls to one server and validates them against the document.
type checker struct {
	t      *testing.T
	base   string
	router routers.Router
	opts   *openapi3filter.Options
	seen   map[string]bool // "POST /oauth/token 400"
}

func newChecker(t *testing.T, baseURL string, seen map[string]bool) *checker {
	t.Helper()
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: baseURL}}
	r, err := legacy.NewRouter(doc)
	must(t, err)
	return &checker{
		t: t, base: baseURL, router: r, seen: seen,
		opts: &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status is an error
			MultiError:            true,
			AuthenticationFunc:    checkAuth,
		},
	}
}

// checkAuth checks that a request offering a documented security scheme
// really carries it. (Body-field client authentication is the document's
// empty alternative, {}.)
func checkAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	switch s := in.SecurityScheme; {
	case s.Type == "http" && s.Scheme == "basic":
		if !strings.HasPrefix(h, "Basic ") {
			return fmt.Errorf("no HTTP Basic credentials")
		}
	case s.Type == "http" && s.Scheme == "bearer":
		if !strings.HasPrefix(h, "Bearer ") {
			return fmt.Errorf("no bearer token")
		}
	default:
		return fmt.Errorf("unknown security scheme %s/%s", s.Type, s.Scheme)
	}
	return nil
}

func (c *checker) newRequest(k call) *http.Request {
	c.t.Helper()
	req, err := http.NewRequest(k.method, c.base+k.path, strings.NewReader(k.body))
	must(c.t, err)
	if k.ctype != "" {
		req.Header.Set("Content-Type", k.ctype)
	}
	if k.basic[0] != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(k.basic[0])+":"+url.QueryEscape(k.basic[1]))))
	}
	for name, vs := range k.header {
		req.Header[name] = vs
	}
	return req
}

// do validates the request, sends it, checks the status and validates the
// response.
func (c *checker) do(name string, k call) result {
	c.t.Helper()
	ctx := context.Background()
	vreq := c.newRequest(k)
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Errorf("%s: %s %s is not a documented operation: %v", name, k.method, k.path, err)
	}
	var in *openapi3filter.RequestValidationInput
	if route != nil {
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: c.opts}
		reqErr := openapi3filter.ValidateRequest(ctx, in)
		switch {
		case k.req == valid && reqErr != nil:
			c.t.Errorf("%s: the document rejects the request: %v", name, reqErr)
		case k.req == invalid && reqErr == nil:
			c.t.Errorf("%s: the document accepts a request the server must refuse", name)
		}
	}

	resp, err := http.DefaultClient.Do(c.newRequest(k))
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(c.t, err)
	r := result{status: resp.StatusCode, header: resp.Header, body: body}
	_ = json.Unmarshal(body, &r.json)
	if r.status != k.status {
		c.t.Errorf("%s: status %d, want %d: %s", name, r.status, k.status, abbrev(body))
	}
	if k.oauthErr != "" && r.str("error") != k.oauthErr {
		c.t.Errorf("%s: error %q, want %q: %s", name, r.str("error"), k.oauthErr, abbrev(body))
	}
	if route != nil {
		rin := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: c.opts,
		}
		rin.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
			c.t.Errorf("%s: the response (%d %s) does not match the document: %v", name, r.status, abbrev(body), err)
		}
		c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, r.status)] = true
	}
	return r
}

func init() {
	// An event stream is text: validate it as a string.
	openapi3filter.RegisterBodyDecoder("text/event-stream", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
}

// stream is do for a response that never ends (GET /events): it reads the
// first frame, hangs up, and validates the response with that body.
func (c *checker) stream(name string, k call) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vreq := c.newRequest(k)
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Fatalf("%s: %s %s is not a documented operation: %v", name, k.method, k.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: c.opts}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		c.t.Errorf("%s: the document rejects the request: %v", name, err)
	}
	resp, err := http.DefaultClient.Do(c.newRequest(k).WithContext(ctx))
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	defer resp.Body.Close()
	frame, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || resp.StatusCode != k.status || !strings.HasPrefix(frame, "retry: ") {
		c.t.Fatalf("%s: %d, first line %q: %v", name, resp.StatusCode, frame, err)
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: c.opts}
	rin.SetBodyBytes([]byte(frame + "\n"))
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		c.t.Errorf("%s: the response does not match the document: %v", name, err)
	}
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)] = true
}

func abbrev(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

const (
	formCT = "application/x-www-form-urlencoded"
	jsonCT = "application/json"
)

func TestOpenAPIConformance(t *testing.T) {
	seen := map[string]bool{}
	e := newEnv(t, sharedRedisStore(t))
	c := newChecker(t, e.srv.URL, seen)
	backend := [2]string{backendApp, e.secret}
	big := strings.Repeat("a", 100<<10)

	post := func(path, ctype, body string) call {
		return call{method: http.MethodPost, path: path, ctype: ctype, body: body, status: http.StatusOK}
	}
	with := func(k call, f func(*call)) call { f(&k); return k }
	signIn := func() result {
		return c.do("sign in", post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", testUser, "password", testPassword)))
	}

	// POST /oauth/token
	a := signIn()
	rt1, at1 := a.str("refresh_token"), a.str("access_token")
	if rt1 == "" || at1 == "" {
		t.Fatalf("sign-in gave no tokens: %s", a.body)
	}
	c.do("password grant, JSON", post("/oauth/token", jsonCT, jsonBody("grant_type", "password", "client_id", publicApp, "username", testUser, "password", testPassword, "scope", "read")))
	bk := c.do("password grant, client_secret_basic", with(post("/oauth/token", formCT, form("grant_type", "password", "username", testUser, "password", testPassword)), func(k *call) { k.basic = backend }))
	cc := c.do("client_credentials, client_secret_post", post("/oauth/token", jsonCT, jsonBody("grant_type", "client_credentials", "client_id", backendApp, "client_secret", e.secret, "scope", "read")))
	if _, ok := cc.json["refresh_token"]; ok {
		t.Errorf("client_credentials answer carries a refresh token: %s", cc.body)
	}
	c.do("client_credentials, client_secret_basic", with(post("/oauth/token", formCT, form("grant_type", "client_credentials")), func(k *call) { k.basic = backend }))
	b := c.do("refresh grant", post("/oauth/token", formCT, form("grant_type", "refresh_token", "client_id", publicApp, "refresh_token", rt1)))
	rt2 := b.str("refresh_token")
	c.do("refresh grant, narrower scope, JSON", post("/oauth/token", jsonCT, jsonBody("grant_type", "refresh_token", "client_id", publicApp, "refresh_token", rt2, "scope", "read")))
	tokenErr := func(name string, k call, status int, code string) result {
		k.status, k.oauthErr = status, code
		return c.do(name, k)
	}
	tokenErr("reuse of a used refresh token", post("/oauth/token", formCT, form("grant_type", "refresh_token", "client_id", publicApp, "refresh_token", rt1)), 400, "invalid_grant")
	tokenErr("wrong password", post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", testUser, "password", "wrong")), 400, "invalid_grant")
	tokenErr("scope not allowed", post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", testUser, "password", testPassword, "scope", "admin")), 400, "invalid_scope")
	tokenErr("grant not allowed for the client", post("/oauth/token", formCT, form("grant_type", "client_credentials", "client_id", publicApp)), 400, "unauthorized_client")
	tokenErr("missing grant_type", with(post("/oauth/token", formCT, form("client_id", publicApp)), func(k *call) { k.req = invalid }), 400, "invalid_request")
	tokenErr("unsupported grant_type", with(post("/oauth/token", formCT, form("grant_type", "authorization_code", "client_id", publicApp)), func(k *call) { k.req = invalid }), 400, "unsupported_grant_type")
	tokenErr("JSON value not a string", with(post("/oauth/token", jsonCT, `{"grant_type":"password","client_id":5}`), func(k *call) { k.req = invalid }), 400, "invalid_request")
	tokenErr("wrong client secret", with(post("/oauth/token", formCT, form("grant_type", "client_credentials")), func(k *call) { k.basic = [2]string{backendApp, "wrong"} }), 401, "invalid_client")
	tokenErr("no client authentication", post("/oauth/token", formCT, form("grant_type", "password", "username", testUser, "password", testPassword)), 401, "invalid_client")
	for i := range loginAttempts {
		tokenErr(fmt.Sprintf("guessing a password, attempt %d", i+1), post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", "victim", "password", "guess")), 400, "invalid_grant")
	}
	if r := tokenErr("guessing a password, rate-limited", post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", "victim", "password", "guess")), 429, "slow_down"); r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	tokenErr("body over 64 KiB", with(post("/oauth/token", formCT, form("grant_type", "password", "x", big)), func(k *call) { k.req = anyBody }), 413, "invalid_request")

	// POST /oauth/revoke
	revoke := func(kv ...string) call { return post("/oauth/revoke", formCT, form(kv...)) }
	d := signIn()
	c.do("revoke a refresh token", revoke("client_id", publicApp, "token", d.str("refresh_token"), "token_type_hint", "refresh_token"))
	c.do("revoke an access token, JSON", post("/oauth/revoke", jsonCT, jsonBody("client_id", publicApp, "token", signIn().str("access_token"))))
	c.do("revoke an unknown token", revoke("client_id", publicApp, "token", "rt_unknown"))
	tokenErr("revoke without a token", with(revoke("client_id", publicApp), func(k *call) { k.req = invalid }), 400, "invalid_request")
	tokenErr("revoke another client's token", with(revoke("token", signIn().str("refresh_token")), func(k *call) { k.basic = backend }), 400, "unauthorized_client")
	tokenErr("revoke with a wrong secret", revoke("client_id", backendApp, "client_secret", "wrong", "token", "x"), 401, "invalid_client")
	tokenErr("revoke, body over 64 KiB", with(revoke("client_id", publicApp, "token", big), func(k *call) { k.req = anyBody }), 413, "invalid_request")

	// POST /oauth/introspect
	intro := func(tok string) call {
		return with(post("/oauth/introspect", formCT, form("token", tok)), func(k *call) { k.basic = backend })
	}
	live := signIn()
	if r := c.do("introspect an access token", intro(live.str("access_token"))); r.json["active"] != true {
		t.Errorf("introspect: %s", r.body)
	}
	if r := c.do("introspect own refresh token, JSON", post("/oauth/introspect", jsonCT, jsonBody("client_id", backendApp, "client_secret", e.secret, "token", bk.str("refresh_token")))); r.json["active"] != true {
		t.Errorf("introspect refresh: %s", r.body)
	}
	if r := c.do("introspect garbage", intro("not-a-token")); r.json["active"] != false {
		t.Errorf("introspect garbage: %s", r.body)
	}
	tokenErr("introspect by a public client", post("/oauth/introspect", formCT, form("client_id", publicApp, "token", at1)), 400, "unauthorized_client")
	tokenErr("introspect without a token", with(intro(""), func(k *call) { k.body = ""; k.req = invalid }), 400, "invalid_request")
	tokenErr("introspect without client authentication", post("/oauth/introspect", formCT, form("token", at1)), 401, "invalid_client")
	tokenErr("introspect, body over 64 KiB", with(intro(big), func(k *call) { k.req = anyBody }), 413, "invalid_request")

	// POST /logout
	logout := func(kv ...string) call {
		k := post("/logout", formCT, form(kv...))
		k.status = http.StatusNoContent
		return k
	}
	l1 := signIn().str("refresh_token")
	c.do("logout", logout("client_id", publicApp, "refresh_token", l1))
	c.do("logout again (already ended)", logout("client_id", publicApp, "refresh_token", l1))
	c.do("logout others, JSON", with(logout(), func(k *call) {
		k.ctype, k.body = jsonCT, jsonBody("client_id", publicApp, "refresh_token", signIn().str("refresh_token"), "scope", "others")
	}))
	used := signIn().str("refresh_token")
	c.do("refresh before logout", post("/oauth/token", formCT, form("grant_type", "refresh_token", "client_id", publicApp, "refresh_token", used)))
	tokenErr("logout with a used refresh token", logout("client_id", publicApp, "refresh_token", used, "scope", "global"), 400, "invalid_grant")
	tokenErr("logout with an unknown scope", with(logout("client_id", publicApp, "refresh_token", signIn().str("refresh_token"), "scope", "everything"), func(k *call) { k.req = invalid }), 400, "invalid_request")
	// The document cannot say "refresh_token or a Bearer header": it accepts the body alone.
	tokenErr("logout without a refresh token", logout("client_id", publicApp), 400, "invalid_request")
	bearer := signIn()
	c.do("logout with Authorization: Bearer <refresh token>, no body", with(logout(), func(k *call) {
		k.ctype = ""
		k.header = http.Header{"Authorization": {"Bearer " + bearer.str("refresh_token")}}
	}))
	c.do("logout with Authorization: Bearer <access token>", with(logout("client_id", publicApp), func(k *call) {
		k.header = http.Header{"Authorization": {"Bearer " + signIn().str("access_token")}}
	}))
	tokenErr("logout by an unknown client", logout("client_id", "nobody", "refresh_token", signIn().str("refresh_token")), 401, "invalid_client")
	tokenErr("logout, body over 64 KiB", with(logout("client_id", publicApp, "refresh_token", big), func(k *call) { k.req = anyBody }), 413, "invalid_request")
	c.do("logout global", logout("client_id", publicApp, "refresh_token", signIn().str("refresh_token"), "scope", "global"))

	// GET /sessions, DELETE /sessions/{id}
	withBearer := func(method, path, at string, status int) call {
		k := call{method: method, path: path, status: status}
		if at != "" {
			k.header = http.Header{"Authorization": {"Bearer " + at}}
		}
		return k
	}
	mine, other := signIn(), signIn()
	if r := c.do("list sessions", withBearer(http.MethodGet, "/sessions", mine.str("access_token"), 200)); len(r.json["sessions"].([]any)) < 2 {
		t.Errorf("GET /sessions: %s", r.body)
	}
	c.do("list sessions without a token", with(withBearer(http.MethodGet, "/sessions", "", 401), func(k *call) { k.req = invalid; k.oauthErr = "invalid_token" }))
	c.do("list sessions, expired or forged token", with(withBearer(http.MethodGet, "/sessions", "x.y.z", 401), func(k *call) { k.oauthErr = "invalid_token" }))
	otherSid := sessionID(t, other.str("access_token"))
	c.do("end another of my sessions", withBearer(http.MethodDelete, "/sessions/"+otherSid, mine.str("access_token"), 204))
	c.do("end it again", with(withBearer(http.MethodDelete, "/sessions/"+otherSid, mine.str("access_token"), 404), func(k *call) { k.oauthErr = "not_found" }))
	c.do("end a session with its ended token", with(withBearer(http.MethodDelete, "/sessions/"+otherSid, other.str("access_token"), 401), func(k *call) { k.oauthErr = "invalid_token" }))

	// POST /users
	signup := func(ctype, body string) call {
		k := post("/users", ctype, body)
		k.status = http.StatusCreated
		return k
	}
	if r := c.do("sign up", signup(formCT, form("username", "bob", "password", "a long passphrase"))); r.str("username") != "bob" {
		t.Errorf("sign up: %s", r.body)
	}
	c.do("sign up with an email, JSON", signup(jsonCT, jsonBody("email", "carol@example.com", "password", "another long passphrase")))
	c.do("sign in as the new user", post("/oauth/token", formCT, form("grant_type", "password", "client_id", publicApp, "username", "BOB", "password", "a long passphrase")))
	tokenErr("sign up with a short password", with(signup(formCT, form("username", "dave", "password", "short")), func(k *call) { k.req = invalid }), 400, "invalid_request")
	tokenErr("sign up without a name", with(signup(jsonCT, jsonBody("password", "a long passphrase")), func(k *call) { k.req = invalid }), 400, "invalid_request")
	tokenErr("sign up with password = username", signup(formCT, form("username", "erin-the-user", "password", "erin-the-user")), 400, "invalid_request")
	tokenErr("sign up with a taken name", signup(formCT, form("username", "ALICE", "password", "a long passphrase")), 409, "username_taken")
	for i := range loginAttempts - 1 { // "bob" signed up once above
		tokenErr(fmt.Sprintf("sign up as bob again, attempt %d", i+2), signup(formCT, form("username", "bob", "password", "a long passphrase")), 409, "username_taken")
	}
	if r := tokenErr("sign up as bob again, rate-limited", signup(formCT, form("username", "bob", "password", "a long passphrase")), 429, "slow_down"); r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	tokenErr("sign up, body over 64 KiB", with(signup(formCT, form("username", "frank", "password", big)), func(k *call) { k.req = anyBody }), 413, "invalid_request")
	closed := newEnv(t, sharedRedisStore(t), func(o *server.Options) { o.AllowSignup = false })
	newChecker(t, closed.srv.URL, seen).do("sign up when disabled", with(signup(formCT, form("username", "gina", "password", "a long passphrase")), func(k *call) { k.status = http.StatusNotFound }))

	// GET endpoints
	get := func(path string) call { return call{method: http.MethodGet, path: path, status: http.StatusOK} }
	c.do("jwks", get("/.well-known/jwks.json"))
	c.do("metadata", get("/.well-known/oauth-authorization-server"))
	c.do("healthz", get("/healthz"))
	c.do("readyz", get("/readyz"))
	if r := c.do("metrics", get("/metrics")); !bytes.Contains(r.body, []byte("tokend_http_requests_total")) {
		t.Errorf("GET /metrics: %s", abbrev(r.body))
	}
	if r := c.do("openapi.yaml", get("/openapi.yaml")); !bytes.Equal(r.body, api.Spec().Data) {
		t.Error("GET /openapi.yaml does not serve the embedded document")
	}
	if r := c.do("docs", get("/docs")); !bytes.Contains(r.body, []byte("swagger-ui-bundle.js")) {
		t.Errorf("GET /docs: %s", abbrev(r.body))
	}
	for _, name := range api.DocsAssetNames() {
		f, _ := api.DocsAsset(name)
		if r := c.do("docs asset "+name, get("/docs/"+name)); !bytes.Equal(r.body, f.Data) {
			t.Errorf("GET /docs/%s does not serve the embedded file", name)
		}
	}
	c.do("unknown docs asset", with(get("/docs/secrets.txt"), func(k *call) { k.status = http.StatusNotFound; k.req = invalid }))
	// Conditional GET: the ETag saves the 1.7 MB bundle on reloads.
	f, _ := api.DocsAsset("swagger-ui-bundle.js")
	if r := c.do("docs asset, If-None-Match", with(get("/docs/swagger-ui-bundle.js"), func(k *call) {
		k.header = http.Header{"If-None-Match": {f.ETag}}
		k.status = http.StatusNotModified
	})); len(r.body) != 0 {
		t.Errorf("304 with a body")
	}

	// GET /events
	feed := [2]string{"feed", e.feed}
	events := call{method: http.MethodGet, path: "/events", basic: feed, status: http.StatusOK}
	c.stream("events, the stream", events)
	c.stream("events, resumed", with(events, func(k *call) { k.header = http.Header{"Last-Event-ID": {"1700000000000-1"}} }))
	c.do("events, malformed Last-Event-ID", with(events, func(k *call) {
		k.header = http.Header{"Last-Event-ID": {"yesterday"}}
		// The header's pattern is documented; kin-openapi does not check
		// header patterns, so the request is not held against it.
		k.req, k.status, k.oauthErr = anyBody, http.StatusBadRequest, "invalid_request"
	}))
	c.do("events, wrong secret", with(events, func(k *call) {
		k.basic = [2]string{"feed", "wrong"}
		k.status, k.oauthErr = http.StatusUnauthorized, "invalid_client"
	}))
	c.do("events, a client without events:read", with(events, func(k *call) {
		k.basic = backend
		k.status, k.oauthErr = http.StatusForbidden, "access_denied"
	}))
	// A client with as many streams open as a replica allows (one here).
	capped := newEnv(t, sharedRedisStore(t), func(o *server.Options) { o.EventsMaxStreams = 1 })
	held, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	req, err := http.NewRequestWithContext(held, http.MethodGet, capped.srv.URL+"/events", nil)
	must(t, err)
	req.SetBasicAuth("feed", capped.feed)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the one stream allowed: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if r := newChecker(t, capped.srv.URL, seen).do("events, one stream too many", with(events, func(k *call) {
		k.basic = [2]string{"feed", capped.feed}
		k.status, k.oauthErr = http.StatusTooManyRequests, "too_many_streams"
	})); r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}

	// The store goes away: 503 with Retry-After from everything that needs it.
	outage(t, seen)

	// Every documented answer was seen, except the 500 no test can provoke
	// without breaking the server.
	doc := loadDoc(t)
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if status == "500" || status == "default" {
					continue
				}
				if !seen[method+" "+path+" "+status] {
					missing = append(missing, method+" "+path+" "+status)
				}
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("documented but never exercised: %s (add a case to TestOpenAPIConformance)", m)
	}
}

// outage drives every store-backed operation with the store down.
func outage(t *testing.T, seen map[string]bool) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	st, err := redisstore.New(rdb, redisstore.Options{})
	must(t, err)
	t.Cleanup(func() { st.Close() })
	e := newEnv(t, st)
	c := newChecker(t, e.srv.URL, seen)
	a := c.do("sign in before the outage", call{method: http.MethodPost, path: "/oauth/token", ctype: formCT,
		body: form("grant_type", "password", "client_id", publicApp, "username", testUser, "password", testPassword), status: 200})
	rt := a.str("refresh_token")
	srv.Stop()

	down := func(name, path, body string) {
		r := c.do(name, call{method: http.MethodPost, path: path, ctype: formCT, body: body, status: 503, oauthErr: "temporarily_unavailable"})
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", name)
		}
	}
	down("refresh, store down", "/oauth/token", form("grant_type", "refresh_token", "client_id", publicApp, "refresh_token", rt))
	down("revoke, store down", "/oauth/revoke", form("client_id", publicApp, "token", rt))
	down("introspect, store down", "/oauth/introspect", form("client_id", backendApp, "client_secret", e.secret, "token", rt))
	down("logout, store down", "/logout", form("client_id", publicApp, "refresh_token", rt))
	c.do("list sessions, store down", call{method: http.MethodGet, path: "/sessions", header: http.Header{"Authorization": {"Bearer " + a.str("access_token")}}, status: 503, oauthErr: "temporarily_unavailable"})
	c.do("end a session, store down", call{method: http.MethodDelete, path: "/sessions/" + sessionID(t, a.str("access_token")), header: http.Header{"Authorization": {"Bearer " + a.str("access_token")}}, status: 503, oauthErr: "temporarily_unavailable"})
	c.do("sign up, store down", call{method: http.MethodPost, path: "/users", ctype: formCT, body: form("username", "hank", "password", "a long passphrase"), status: 503, oauthErr: "temporarily_unavailable"})
	if r := c.do("readyz, store down", call{method: http.MethodGet, path: "/readyz", status: 503}); r.header.Get("Retry-After") == "" {
		t.Error("readyz 503 without Retry-After")
	}
	c.do("healthz, store down", call{method: http.MethodGet, path: "/healthz", status: 200})
}

// sessionID returns the sid claim of an access token (read, not verified).
func sessionID(t *testing.T, at string) string {
	t.Helper()
	_, c := testkit.Decode(t, at)
	sid, _ := c["sid"].(string)
	return sid
}
