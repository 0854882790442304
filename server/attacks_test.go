package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/token"
	"github.com/tokend/tokend/verify"
)

var b64 = base64.RawURLEncoding

// rawJWT assembles a token from a header and claims, signed by sign (nil:
// no signature).
func rawJWT(t *testing.T, header, claims map[string]any, sign func(signingInput string) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	must(t, err)
	c, err := json.Marshal(claims)
	must(t, err)
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign(in)
	}
	return in + "." + b64.EncodeToString(sig)
}

// signWith signs with a real key (its own algorithm), whatever the header says.
func signWith(t *testing.T, k *keys.Key) func(string) []byte {
	return func(in string) []byte {
		sig, err := k.Method.Sign(in, k.Signer)
		must(t, err)
		return sig
	}
}

func hs256(secret []byte) func(string) []byte {
	return func(in string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return m.Sum(nil)
	}
}

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
	_, liveClaims := jwtParts(t, live.str("access_token"))
	real := e.keys.Current()
	now := e.clock.Now()

	v, err := verify.New(context.Background(), testIssuer, verify.WithJWKSURL(e.srv.URL+"/.well-known/jwks.json"), verify.WithAudience("orders"))
	must(t, err)
	resource := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("the protected resource"))
	})))
	t.Cleanup(resource.Close)

	header := func(kv ...any) map[string]any {
		h := map[string]any{"alg": real.Alg, "typ": "at+jwt", "kid": real.ID}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(h, kv[i].(string))
			} else {
				h[kv[i].(string)] = kv[i+1]
			}
		}
		return h
	}
	claims := func(kv ...any) map[string]any {
		c := map[string]any{}
		for k, val := range liveClaims {
			c[k] = val
		}
		c["jti"] = "forged-" + token.NewID()
		c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(10*time.Minute).Unix()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
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

	// The genuine article, rebuilt the same way, is accepted: every refusal
	// below is down to its one change.
	control := rawJWT(t, header(), claims(), signWith(t, real))
	if a := e.post("/oauth/introspect", url.Values{"token": {control}}, basic...); a.json["active"] != true {
		t.Fatalf("the control token is not active: %s", a.body)
	}
	if _, err := v.Verify(context.Background(), control); err != nil {
		t.Fatalf("verify refuses the control token: %v", err)
	}

	attacks := []struct{ name, tok string }{
		{"alg none", rawJWT(t, header("alg", "none"), claims(), nil)},
		{"alg None", rawJWT(t, header("alg", "None"), claims(), nil)},
		{"alg none, real signature kept", rawJWT(t, header("alg", "none"), claims(), signWith(t, real))},
		{"HS256 keyed with the public key PEM", rawJWT(t, header("alg", "HS256"), claims(), hs256(pubPEM))},
		{"HS256 keyed with the public key DER", rawJWT(t, header("alg", "HS256"), claims(), hs256(der))},
		{"HS256 keyed with the JWKS document", rawJWT(t, header("alg", "HS256"), claims(), hs256(realJWKS))},
		{"HS256 keyed with the public point", rawJWT(t, header("alg", "HS256"), claims(), hs256(point.Bytes()))},
		{"HS512 keyed with the public key PEM", rawJWT(t, header("alg", "HS512"), claims(), hs256(pubPEM))},
		{"unknown kid, attacker's key", rawJWT(t, header("kid", evilKey.ID), claims(), signWith(t, evilKey))},
		{"no kid", rawJWT(t, header("kid", nil), claims(), signWith(t, real))},
		{"kid path traversal, HMAC with empty key", rawJWT(t, header("alg", "HS256", "kid", "../../../../../../dev/null"), claims(), hs256(nil))},
		{"kid path traversal, real signature", rawJWT(t, header("kid", "../../keys/"+real.ID+".pem"), claims(), signWith(t, real))},
		{"kid injection", rawJWT(t, header("kid", real.ID+"' OR '1'='1"), claims(), signWith(t, real))},
		{"kid not a string", rawJWT(t, header("kid", []string{real.ID}), claims(), signWith(t, real))},
		{"embedded jwk, attacker's key", rawJWT(t, header("kid", evilKey.ID, "jwk", evilJWK), claims(), signWith(t, evilKey))},
		{"embedded jwk, real kid", rawJWT(t, header("jwk", evilJWK), claims(), signWith(t, evilKey))},
		{"jku to the attacker", rawJWT(t, header("kid", evilKey.ID, "jku", "https://evil.test/jwks.json"), claims(), signWith(t, evilKey))},
		{"x5u to the attacker", rawJWT(t, header("kid", evilKey.ID, "x5u", "https://evil.test/cert.pem"), claims(), signWith(t, evilKey))},
		{"x5c chain, attacker's key", rawJWT(t, header("x5c", []string{base64.StdEncoding.EncodeToString(der)}), claims(), signWith(t, evilKey))},
		{"alg switched to ES384", rawJWT(t, header("alg", "ES384"), claims(), func(in string) []byte {
			s, err := jwt.SigningMethodES384.Sign(in, otherCurve)
			must(t, err)
			return s
		})},
		{"alg switched to RS256", rawJWT(t, header("alg", "RS256"), claims(), signWith(t, real))},
		{"crit header", rawJWT(t, header("crit", []string{"exp"}, "exp", 1), claims(), signWith(t, real))},
		{"typ JWT", rawJWT(t, header("typ", "JWT"), claims(), signWith(t, real))},
		{"typ missing", rawJWT(t, header("typ", nil), claims(), signWith(t, real))},
		{"typ of an ID token", rawJWT(t, header("typ", "id_token+jwt"), claims(), signWith(t, real))},
		{"expired", rawJWT(t, header(), claims("iat", now.Add(-2*time.Hour).Unix(), "nbf", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix()), signWith(t, real))},
		{"no exp", rawJWT(t, header(), claims("exp", nil), signWith(t, real))},
		{"not yet valid", rawJWT(t, header(), claims("nbf", now.Add(time.Hour).Unix()), signWith(t, real))},
		{"issued in the future", rawJWT(t, header(), claims("iat", now.Add(time.Hour).Unix(), "nbf", now.Add(time.Hour).Unix()), signWith(t, real))},
		{"wrong aud", rawJWT(t, header(), claims("aud", []string{"billing"}), signWith(t, real))},
		{"no aud", rawJWT(t, header(), claims("aud", nil), signWith(t, real))},
		{"wrong iss", rawJWT(t, header(), claims("iss", "https://evil.test"), signWith(t, real))},
		{"iss with a trailing slash", rawJWT(t, header(), claims("iss", testIssuer+"/"), signWith(t, real))},
		{"payload changed after signing", func() string {
			parts := strings.Split(control, ".")
			forged := strings.Split(rawJWT(t, header(), claims("roles", []string{"admin"}), nil), ".")
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
