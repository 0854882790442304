package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

// Forged and misused tokens, each refused by tokend's introspection
// (active: false), by tokend's own verification, and by the verify package
// a resource server uses (directly and as Bearer through its middleware).
func TestTokenAttacks(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	basic := []string{backendApp, e.secret}
	live := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, basic...)
	if live.status != 200 {
		t.Fatalf("sign in: %d %s", live.status, live.body)
	}
	_, liveClaims := testkit.Decode(t, live.str("access_token"))
	real := e.keys.Current()
	now := e.clock.Now()

	v, err := verify.New(context.Background(), testIssuer, verify.WithJWKSURL(e.srv.URL+"/.well-known/jwks.json"), verify.WithAudience("orders"))
	must(t, err)
	resource := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("the protected resource"))
	})))
	t.Cleanup(resource.Close)

	header := func(kv ...any) map[string]any {
		return testkit.Edit(map[string]any{"alg": real.Alg, "typ": "at+jwt", "kid": real.ID}, kv...)
	}
	claims := func(kv ...any) map[string]any {
		c := testkit.Edit(liveClaims, "jti", "forged-"+token.NewID(), "iat", now.Unix(), "nbf", now.Unix(), "exp", now.Add(10*time.Minute).Unix())
		return testkit.Edit(c, kv...)
	}

	// The attacker's own key, and the public key in the forms an HS256
	// "public key as secret" attack tries.
	evilKey, err := keys.Generate(verify.ES256)
	must(t, err)
	evilSet, err := keys.NewSet(evilKey)
	must(t, err)
	var jwks struct{ Keys []map[string]any }
	must(t, json.Unmarshal(evilSet.JWKS(), &jwks))
	evilJWK := jwks.Keys[0]
	der, err := x509.MarshalPKIXPublicKey(real.Public)
	must(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	realJWKS := e.get("/.well-known/jwks.json").body
	point, err := real.Public.(*ecdsa.PublicKey).ECDH()
	must(t, err)
	otherCurve, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(t, err)
	realSig := testkit.Signer(t, real.Method, real.Signer)
	evilSig := testkit.Signer(t, evilKey.Method, evilKey.Signer)

	// The genuine article, rebuilt the same way, is accepted: every refusal
	// below is down to its one change.
	control := testkit.Encode(t, header(), claims(), realSig)
	if a := e.post("/oauth/introspect", url.Values{"token": {control}}, basic...); a.json["active"] != true {
		t.Fatalf("the control token is not active: %s", a.body)
	}
	if _, err := v.Verify(context.Background(), control); err != nil {
		t.Fatalf("verify refuses the control token: %v", err)
	}

	attacks := []struct{ name, tok string }{
		{"alg none", testkit.Encode(t, header("alg", "none"), claims(), nil)},
		{"alg None", testkit.Encode(t, header("alg", "None"), claims(), nil)},
		{"alg none, real signature kept", testkit.Encode(t, header("alg", "none"), claims(), realSig)},
		{"HS256 keyed with the public key PEM", testkit.Encode(t, header("alg", "HS256"), claims(), testkit.HS256(pubPEM))},
		{"HS256 keyed with the public key DER", testkit.Encode(t, header("alg", "HS256"), claims(), testkit.HS256(der))},
		{"HS256 keyed with the JWKS document", testkit.Encode(t, header("alg", "HS256"), claims(), testkit.HS256(realJWKS))},
		{"HS256 keyed with the public point", testkit.Encode(t, header("alg", "HS256"), claims(), testkit.HS256(point.Bytes()))},
		{"HS512 keyed with the public key PEM", testkit.Encode(t, header("alg", "HS512"), claims(), testkit.HS256(pubPEM))},
		{"unknown kid, attacker's key", testkit.Encode(t, header("kid", evilKey.ID), claims(), evilSig)},
		{"no kid", testkit.Encode(t, header("kid", nil), claims(), realSig)},
		{"kid path traversal, HMAC with empty key", testkit.Encode(t, header("alg", "HS256", "kid", "../../../../../../dev/null"), claims(), testkit.HS256(nil))},
		{"kid path traversal, real signature", testkit.Encode(t, header("kid", "../../keys/"+real.ID+".pem"), claims(), realSig)},
		{"kid injection", testkit.Encode(t, header("kid", real.ID+"' OR '1'='1"), claims(), realSig)},
		{"kid not a string", testkit.Encode(t, header("kid", []string{real.ID}), claims(), realSig)},
		{"embedded jwk, attacker's key", testkit.Encode(t, header("kid", evilKey.ID, "jwk", evilJWK), claims(), evilSig)},
		{"embedded jwk, real kid", testkit.Encode(t, header("jwk", evilJWK), claims(), evilSig)},
		{"jku to the attacker", testkit.Encode(t, header("kid", evilKey.ID, "jku", "https://evil.test/jwks.json"), claims(), evilSig)},
		{"x5u to the attacker", testkit.Encode(t, header("kid", evilKey.ID, "x5u", "https://evil.test/cert.pem"), claims(), evilSig)},
		{"x5c chain, attacker's key", testkit.Encode(t, header("x5c", []string{base64.StdEncoding.EncodeToString(der)}), claims(), evilSig)},
		{"alg switched to ES384", testkit.Encode(t, header("alg", "ES384"), claims(), func(in string) []byte {
			s, err := jwt.SigningMethodES384.Sign(in, otherCurve)
			must(t, err)
			return s
		})},
		{"alg switched to RS256", testkit.Encode(t, header("alg", "RS256"), claims(), realSig)},
		{"crit header", testkit.Encode(t, header("crit", []string{"exp"}, "exp", 1), claims(), realSig)},
		{"typ JWT", testkit.Encode(t, header("typ", "JWT"), claims(), realSig)},
		{"typ missing", testkit.Encode(t, header("typ", nil), claims(), realSig)},
		{"typ of an ID token", testkit.Encode(t, header("typ", "id_token+jwt"), claims(), realSig)},
		{"expired", testkit.Encode(t, header(), claims("iat", now.Add(-2*time.Hour).Unix(), "nbf", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix()), realSig)},
		{"no exp", testkit.Encode(t, header(), claims("exp", nil), realSig)},
		{"not yet valid", testkit.Encode(t, header(), claims("nbf", now.Add(time.Hour).Unix()), realSig)},
		{"issued in the future", testkit.Encode(t, header(), claims("iat", now.Add(time.Hour).Unix(), "nbf", now.Add(time.Hour).Unix()), realSig)},
		{"wrong aud", testkit.Encode(t, header(), claims("aud", []string{"billing"}), realSig)},
		{"no aud", testkit.Encode(t, header(), claims("aud", nil), realSig)},
		{"wrong iss", testkit.Encode(t, header(), claims("iss", "https://evil.test"), realSig)},
		{"iss with a trailing slash", testkit.Encode(t, header(), claims("iss", testIssuer+"/"), realSig)},
		{"payload changed after signing", func() string {
			parts := strings.Split(control, ".")
			forged := strings.Split(testkit.Encode(t, header(), claims("roles", []string{"admin"}), nil), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}()},
		{"signature stripped", strings.Join(strings.Split(control, ".")[:2], ".") + "."},
		{"a refresh token", live.str("refresh_token")},
		{"a client secret", e.secret},
		{"empty", ""},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if a.tok != "" {
				if r := e.post("/oauth/introspect", url.Values{"token": {a.tok}, "token_type_hint": {"access_token"}}, basic...); r.status != 200 ||
					(r.json["active"] != false && r.str("token_type") != "refresh_token") {
					t.Errorf("introspection: %d %s", r.status, r.body)
				}
			}
			if _, err := e.issuer.Verify(a.tok, e.clock.Now()); err == nil {
				t.Errorf("token.Issuer.Verify accepted it")
			}
			c, err := v.Verify(context.Background(), a.tok)
			if err == nil {
				t.Errorf("verify accepted it: %+v", c)
			} else if !errors.Is(err, verify.ErrInvalid) && !errors.Is(err, verify.ErrExpired) {
				t.Errorf("verify: %v, want ErrInvalid or ErrExpired", err)
			}
			req, _ := http.NewRequest(http.MethodGet, resource.URL, nil)
			req.Header.Set("Authorization", "Bearer "+a.tok)
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && !(a.tok == "" && resp.StatusCode == http.StatusBadRequest) {
				t.Errorf("as a Bearer: %d, want 401", resp.StatusCode)
			}
		})
	}

	// A refresh token is never described as an access token: another
	// client learns nothing, its own client sees a refresh token.
	rt := live.str("refresh_token")
	if r := e.post("/oauth/introspect", url.Values{"token": {rt}, "token_type_hint": {"access_token"}}, basic...); r.json["active"] != true || r.str("token_type") != "refresh_token" {
		t.Errorf("the owner's introspection of its refresh token: %s", r.body)
	}
	other := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {testUser}, "password": {testPassword}})
	if r := e.post("/oauth/introspect", url.Values{"token": {other.str("refresh_token")}, "token_type_hint": {"access_token"}}, basic...); r.json["active"] != false {
		t.Errorf("another client's refresh token is described: %s", r.body)
	}
	// And the reverse: an access token is not a refresh token.
	wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {live.str("access_token")}}, basic...),
		400, "invalid_grant", "refresh token is invalid")
	wantError(t, e.post("/logout", url.Values{"refresh_token": {live.str("access_token")}}, basic...), 400, "invalid_grant", "")
	// The attacks left the session alone.
	if a := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, basic...); a.status != 200 {
		t.Fatalf("the attacked session no longer refreshes: %d %s", a.status, a.body)
	}
}
