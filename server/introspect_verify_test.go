package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/verify"
)

// Introspection and a resource server's verify.Verifier run one check
// (docs/design.md, "Access tokens"), so they give one verdict on every
// token. These are the inputs on which they once disagreed
// (introspection took exp or iat as a string, and exp = 1e16), and
// neighbours of them.
func TestIntrospectionAgreesWithVerify(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	basic := []string{backendApp, e.secret}
	live := e.post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {testUser}, "password": {testPassword}}, basic...)
	if live.status != 200 {
		t.Fatalf("sign in: %d %s", live.status, live.body)
	}
	_, liveClaims := testkit.Decode(t, live.str("access_token"))
	real := e.keys.Current()
	now := e.clock.Now()
	v, err := verify.New(context.Background(), testIssuer, verify.WithJWKSURL(e.srv.URL+"/.well-known/jwks.json"),
		verify.WithAudience("orders"), verify.WithClock(e.clock.Now))
	must(t, err)

	// payload is the live token's claims with times of now, changed by
	// the JSON members of edits (raw JSON values, "" to delete).
	payload := func(edits ...string) []byte {
		c := map[string]json.RawMessage{}
		for k, val := range liveClaims {
			b, err := json.Marshal(val)
			must(t, err)
			c[k] = b
		}
		sec := func(d time.Duration) json.RawMessage { return []byte(strconv.FormatInt(now.Add(d).Unix(), 10)) }
		c["iat"], c["nbf"], c["exp"] = sec(0), sec(0), sec(10*time.Minute)
		for i := 0; i < len(edits); i += 2 {
			if edits[i+1] == "" {
				delete(c, edits[i])
			} else {
				c[edits[i]] = json.RawMessage(edits[i+1])
			}
		}
		b, err := json.Marshal(c)
		must(t, err)
		return b
	}
	header := `{"alg":"` + real.Alg + `","kid":"` + real.ID + `","typ":"at+jwt"}`
	token := func(header string, payload []byte) string {
		b64 := base64.RawURLEncoding
		in := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(payload)
		return in + "." + b64.EncodeToString(testkit.Signer(t, real.Method, real.Signer)(in))
	}
	str := func(d time.Duration) string { return `"` + strconv.FormatInt(now.Add(d).Unix(), 10) + `"` }

	cases := []struct {
		name   string
		tok    string
		active bool
	}{
		{"control", token(header, payload()), true},
		{"exp a fraction", token(header, payload("exp", strconv.FormatInt(now.Unix()+600, 10)+".5")), true},
		{"exp a string", token(header, payload("exp", str(10*time.Minute))), false},
		{"iat a string", token(header, payload("iat", str(0))), false},
		{"nbf a string", token(header, payload("nbf", str(0))), false},
		{"exp 1e16", token(header, payload("exp", "1e16")), false},
		{"exp 1e16 written out", token(header, payload("exp", "10000000000000000")), false},
		{"nbf null", token(header, payload("nbf", "null")), false},
		{"iss spelled ISS", token(header, payload("iss", "", "ISS", `"`+testIssuer+`"`)), false},
		{"typ overridden by TYP", token(strings.TrimSuffix(header, "}")+`,"TYP":"JWT"}`, payload()), true},
		{"trailing data after the claims", token(header, append(payload(), " {}"...)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("/oauth/introspect", url.Values{"token": {tc.tok}}, basic...)
			if r.status != 200 || r.json["active"] != tc.active {
				t.Errorf("introspection: %d %s, want active %v", r.status, r.body, tc.active)
			}
			if _, err := v.Verify(context.Background(), tc.tok); (err == nil) != tc.active {
				t.Errorf("verify: %v, want accepted %v", err, tc.active)
			}
		})
	}
}
