package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/internal/testredis"
)

// The floor server must do the work it stands for (docs/performance.md,
// "The floor"): a signed token the standard way verifies, one rotation
// per refresh token, and refusals for the rest; otherwise its figure in
// make bench would be a floor for less work than a token server does.
func TestFloorServesTheBaselineProtocol(t *testing.T) {
	s := &server{rdb: testredis.Client(t), prefix: testredis.Prefix(t)}
	if err := s.setAlg("jwt-es256"); err != nil {
		t.Fatal(err)
	}
	if err := rotate.Load(context.Background(), s.rdb).Err(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(s.token))
	defer srv.Close()

	post := func(form url.Values, user, pass string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("status %d: body is not JSON: %v", resp.StatusCode, err)
		}
		return resp.StatusCode, body
	}
	pub := &s.key.(*ecdsa.PrivateKey).PublicKey
	verify := func(body map[string]any, sub string) {
		t.Helper()
		at, _ := body["access_token"].(string)
		tok, err := jwt.Parse(at, func(*jwt.Token) (any, error) { return pub, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired())
		if err != nil {
			t.Fatalf("access token does not verify: %v", err)
		}
		if got, _ := tok.Claims.GetSubject(); got != sub {
			t.Fatalf("sub = %q, want %q", got, sub)
		}
	}

	st, body := post(url.Values{"grant_type": {"client_credentials"}}, "bench-client", "bench-secret")
	if st != 200 {
		t.Fatalf("client_credentials: %d %v", st, body)
	}
	verify(body, "bench-client")
	if st, _ := post(url.Values{"grant_type": {"client_credentials"}}, "bench-client", "wrong"); st != 401 {
		t.Fatalf("wrong secret: %d, want 401", st)
	}

	st, body = post(url.Values{"grant_type": {"password"}, "username": {"test"}, "password": {"test"}}, "bench-client", "bench-secret")
	if st != 200 {
		t.Fatalf("password: %d %v", st, body)
	}
	first, _ := body["refresh_token"].(string)
	st, body = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}}, "bench-client", "bench-secret")
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, body)
	}
	verify(body, "test")
	if next, _ := body["refresh_token"].(string); next == "" || next == first {
		t.Fatalf("refresh did not rotate: %q", next)
	}
	if st, body := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}}, "bench-client", "bench-secret"); st != 400 {
		t.Fatalf("second use of a rotated token: %d %v, want 400", st, body)
	}
}
