package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/verify"
)

// exampleTokend stands in for a running tokend: it serves the metadata and
// the JWKS a Verifier reads, and mints access tokens for the audience
// "orders" as tokend does.
func exampleTokend() (issuerURL string, mint func(c tokenClaims, at time.Time) string, stop func()) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
		"x": enc(key.X.FillBytes(make([]byte, 32))), "y": enc(key.Y.FillBytes(make([]byte, 32))),
	}}})
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/.well-known/jwks.json"})
	})
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(jwks)
	})
	mint = func(c tokenClaims, at time.Time) string {
		t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": srv.URL, "sub": c.Subject, "aud": []string{"orders"}, "client_id": c.ClientID,
			"exp": at.Add(15 * time.Minute).Unix(), "iat": at.Unix(), "nbf": at.Unix(), "jti": "id-" + at.String(),
			"scope": c.Scope, "roles": c.Roles,
		})
		t.Header["kid"], t.Header["typ"] = "k1", "at+jwt"
		tok, err := t.SignedString(key)
		if err != nil {
			log.Fatal(err)
		}
		return tok
	}
	return srv.URL, mint, srv.Close
}

// A resource server makes one Verifier at start-up and checks tokens with
// it.
func ExampleNew() {
	issuer, mint, stop := exampleTokend()
	defer stop()
	tok := mint(tokenClaims{Subject: "user-1", ClientID: "web", Scope: "read write", Roles: []string{"admin"}}, time.Now())

	ctx := context.Background()
	// issuer is tokend's JWT_ISSUER, e.g. "https://auth.example.com".
	v, err := verify.New(ctx, issuer, verify.WithAudience("orders"))
	if err != nil {
		log.Fatal(err)
	}
	claims, err := v.Verify(ctx, tok)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject, claims.Scopes, claims.Roles, claims.HasRole("admin"))
	// Output: user-1 [read write] [admin] true
}

// Verify tells an expired token (the client should refresh) from an
// invalid one.
func ExampleVerifier_Verify() {
	issuer, mint, stop := exampleTokend()
	defer stop()
	ctx := context.Background()
	v, err := verify.New(ctx, issuer, verify.WithAudience("orders"))
	if err != nil {
		log.Fatal(err)
	}
	old := mint(tokenClaims{Subject: "user-1", ClientID: "web"}, time.Now().Add(-time.Hour))

	_, err = v.Verify(ctx, old)
	fmt.Println(errors.Is(err, verify.ErrExpired), errors.Is(err, verify.ErrInvalid))
	_, err = v.Verify(ctx, "not-a-token")
	fmt.Println(errors.Is(err, verify.ErrExpired), errors.Is(err, verify.ErrInvalid))
	// Output:
	// true false
	// false true
}

// Middleware guards handlers; RequireRole and RequireScope narrow them.
func ExampleVerifier_Middleware() {
	issuer, mint, stop := exampleTokend()
	defer stop()
	v, err := verify.New(context.Background(), issuer, verify.WithAudience("orders"))
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/orders", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "orders of %s", c.Subject)
	})))
	mux.Handle("/admin/orders", v.Middleware(verify.RequireRole("admin")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "all orders")
	}))))
	api := httptest.NewServer(mux)
	defer api.Close()

	get := func(path, tok string) {
		req, _ := http.NewRequest(http.MethodGet, api.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		line := fmt.Sprint(path, " ", resp.StatusCode)
		if ch := resp.Header.Get("WWW-Authenticate"); ch != "" {
			line += " WWW-Authenticate: " + ch
		}
		if te := resp.Header.Get("Token-Expired"); te != "" {
			line += " Token-Expired: " + te
		}
		fmt.Println(line)
	}
	user := mint(tokenClaims{Subject: "user-1", ClientID: "web", Roles: []string{"user"}}, time.Now())
	expired := mint(tokenClaims{Subject: "user-1", ClientID: "web"}, time.Now().Add(-time.Hour))

	get("/orders", "")
	get("/orders", user)
	get("/admin/orders", user)
	get("/orders", expired)
	// Output:
	// /orders 401 WWW-Authenticate: Bearer
	// /orders 200
	// /admin/orders 403 WWW-Authenticate: Bearer error="insufficient_scope", error_description="the access token lacks the role admin"
	// /orders 401 WWW-Authenticate: Bearer error="invalid_token", error_description="the access token expired" Token-Expired: true
}

// RequireScope answers 403 with the missing scope in the challenge.
func ExampleRequireScope() {
	h := verify.RequireScope("orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest(http.MethodPost, "/orders", nil)
	// Middleware puts the claims of the verified token in the context.
	req = req.WithContext(verify.NewContext(req.Context(), &verify.Claims{Subject: "user-1", Scopes: []string{"orders:read"}}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output: 403 Bearer error="insufficient_scope", error_description="the access token lacks the scope orders:write", scope="orders:write"
}
