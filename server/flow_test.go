package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// User story 1 (docs/design.md, "User stories"): configurable refresh lifetime; refresh verifies the
// token and loads the user by sub; expired and inactive are refused (400).
func TestStory1ConfigurableRefreshLifetime(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), 2*time.Hour)
		a := e.signIn()
		if a.str("access_token") == "" || a.str("refresh_token") == "" || a.str("token_type") != "Bearer" {
			t.Fatalf("sign-in answer lacks tokens: %s", a.body)
		}
		if a.header.Get("Cache-Control") != "no-store" || a.header.Get("Pragma") != "no-cache" {
			t.Fatalf("token answer cache headers: %v", a.header)
		}
		// The session lives exactly the configured lifetime from sign-in.
		rt, err := token.ParseRefresh(a.str("refresh_token"))
		must(t, err)
		sess, err := e.store.Session(context.Background(), rt.UserID, rt.SessionID)
		must(t, err)
		if got := sess.ExpiresAt.Sub(sess.CreatedAt); got != 2*time.Hour {
			t.Fatalf("session lifetime %v, want 2h", got)
		}

		e.clock.Advance(time.Hour)
		b := e.refresh(a.str("refresh_token"))
		if b.status != 200 || b.str("access_token") == "" || b.str("refresh_token") == "" {
			t.Fatalf("refresh: %d %s", b.status, b.body)
		}
		_, claims := testkit.Decode(t, b.str("access_token"))
		if claims["sub"] != e.userID {
			t.Fatalf("refreshed token sub %v, want %s", claims["sub"], e.userID)
		}
		// Absolute lifetime: the rotation did not extend it.
		e.clock.Advance(time.Hour + time.Second)
		wantError(t, e.refresh(b.str("refresh_token")), 400, "invalid_grant", "expired")

		// Inactive user.
		c := e.signIn()
		must(t, e.store.SetUserDisabled(context.Background(), e.userID, true, e.clock.Now()))
		wantError(t, e.refresh(c.str("refresh_token")), 400, "invalid_grant", "disabled")
	})
}

// User story 2 (docs/design.md, "User stories"): stored server-side, single use, rotated every refresh,
// logout revokes, clear errors for invalid and expired tokens.
func TestStory2StoreRotateRevoke(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		a := e.signIn()
		rt1 := a.str("refresh_token")
		p, _ := token.ParseRefresh(rt1)
		if _, err := e.store.Session(context.Background(), p.UserID, p.SessionID); err != nil {
			t.Fatalf("session not stored server-side: %v", err)
		}
		b := e.refresh(rt1)
		rt2 := b.str("refresh_token")
		if b.status != 200 || rt2 == "" || rt2 == rt1 {
			t.Fatalf("refresh did not rotate: %d %s", b.status, b.body)
		}
		c := e.refresh(rt2)
		rt3 := c.str("refresh_token")
		if c.status != 200 || rt3 == rt2 {
			t.Fatalf("second refresh: %d %s", c.status, c.body)
		}
		// Logout revokes: 204, no body; the token no longer refreshes.
		l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {rt3}})
		if l.status != http.StatusNoContent || len(l.body) != 0 {
			t.Fatalf("logout: %d %q", l.status, l.body)
		}
		wantError(t, e.refresh(rt3), 400, "invalid_grant", "revoked")
		// Logging out again is harmless.
		if l := e.post("/logout", url.Values{"client_id": {publicApp}, "refresh_token": {rt3}}); l.status != 204 {
			t.Fatalf("second logout: %d %s", l.status, l.body)
		}
		wantError(t, e.refresh("not-a-token"), 400, "invalid_grant", "invalid")
		// A token for the same session and its next generation, made with
		// a key this server does not hold.
		other := token.NewRefresher(token.StaticRefreshKeys{Set: keys.EphemeralRefresh()})
		foreign, fp, err := other.Mint(p.UserID, p.SessionID, p.Generation+3)
		must(t, err)
		wantError(t, e.refresh(foreign), 400, "invalid_grant", "invalid")
		forged := strings.Replace(foreign, "_"+fp.KeyID+"_", "_"+p.KeyID+"_", 1) // another key's MAC under our kid
		wantError(t, e.refresh(forged), 400, "invalid_grant", "invalid")
	})
}

// User story 3 (docs/design.md, "User stories"): opaque 256-bit token; record with created, updated,
// expires and revoked times; the record goes away with its user; revoking
// answers without a body.
func TestStory3OpaqueTokensWithRevocation(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), time.Hour)
		a := e.signIn()
		rt := a.str("refresh_token")
		if strings.Count(rt, ".") != 0 || len(rt) < token.MinRefreshLen || len(rt) > token.MaxRefreshLen || url.QueryEscape(rt) != rt {
			t.Fatalf("refresh token looks like a JWT, has the wrong size or is not URL-safe: %q", rt)
		}
		mac := rt[len(rt)-43:] // the MAC may itself contain '_'
		raw, err := base64.RawURLEncoding.DecodeString(mac)
		if err != nil || len(raw)*8 < 256 {
			t.Fatalf("MAC part carries %d bits", len(raw)*8)
		}
		p, _ := token.ParseRefresh(rt)
		e.clock.Advance(time.Minute)
		rt2 := e.refresh(rt).str("refresh_token")

		r := e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {rt2}})
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Fatalf("revoke: %d %q", r.status, r.body)
		}
		sess, err := e.store.Session(context.Background(), p.UserID, p.SessionID)
		must(t, err)
		if sess.CreatedAt.IsZero() || !sess.UpdatedAt.After(sess.CreatedAt) || sess.ExpiresAt.IsZero() || sess.RevokedAt.IsZero() {
			t.Fatalf("session record times: %+v", sess)
		}
		wantError(t, e.refresh(rt2), 400, "invalid_grant", "revoked")
		// Unknown tokens also get 200 (RFC 7009 §2.2).
		if r := e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {"rt_nonsense"}}); r.status != 200 {
			t.Fatalf("revoke unknown: %d %s", r.status, r.body)
		}
		// An active session's record goes away with its user (an ended
		// one's expires by its TTL), and no token of the user works.
		live, _ := token.ParseRefresh(e.signIn().str("refresh_token"))
		must(t, e.store.DeleteUser(context.Background(), e.userID))
		if _, err := e.store.Session(context.Background(), live.UserID, live.SessionID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("session record outlived its user: %v", err)
		}
		wantError(t, e.refresh(rt2), 400, "invalid_grant", "")
	})
}

// User story 5 (docs/design.md, "User stories"): 15-minute access token renewed from a rotating refresh
// token; reuse of a rotated token, a revoked token and an expired token are
// each refused.
func TestStory5RotatingRefresh(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		e := newEnv(t, newStore(t), 24*time.Hour)
		a := e.signIn()
		if a.json["expires_in"] != float64(900) {
			t.Fatalf("expires_in %v, want 900", a.json["expires_in"])
		}
		rt := a.str("refresh_token")
		var used []string
		for i := 0; i < 5; i++ {
			e.clock.Advance(15 * time.Minute)
			b := e.refresh(rt)
			if b.status != 200 {
				t.Fatalf("refresh %d: %d %s", i, b.status, b.body)
			}
			used = append(used, rt)
			rt = b.str("refresh_token")
		}
		// Reuse of a token rotated three generations ago revokes the family.
		wantError(t, e.refresh(used[2]), 400, "invalid_grant", "already used")
		wantError(t, e.refresh(rt), 400, "invalid_grant", "revoked")

		// A revoked token.
		r := e.signIn().str("refresh_token")
		e.post("/oauth/revoke", url.Values{"client_id": {publicApp}, "token": {r}})
		wantError(t, e.refresh(r), 400, "invalid_grant", "revoked")

		// An expired token.
		x := e.signIn().str("refresh_token")
		e.clock.Advance(24*time.Hour + time.Second)
		wantError(t, e.refresh(x), 400, "invalid_grant", "expired")
	})
}

func TestAccessTokenClaims(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.signIn()
	h, c := testkit.Decode(t, a.str("access_token"))
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] == "" {
		t.Fatalf("header %v", h)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "roles", "sid"} {
		if _, ok := c[k]; !ok {
			t.Errorf("claim %s missing from %v", k, c)
		}
	}
	if c["iss"] != testIssuer || c["client_id"] != publicApp || c["scope"] != "read write" {
		t.Fatalf("claims %v", c)
	}
	if b := e.signIn(); jwtSID(t, b.str("access_token")) == jwtSID(t, a.str("access_token")) {
		t.Fatal("two sign-ins share a session id")
	}
	_, c2 := testkit.Decode(t, e.signIn().str("access_token"))
	if c2["jti"] == c["jti"] {
		t.Fatal("jti repeated")
	}
}

func jwtSID(t *testing.T, at string) any { _, c := testkit.Decode(t, at); return c["sid"] }

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	a := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, backendApp, e.secret)
	if a.status != 200 || a.str("refresh_token") != "" || a.str("scope") != "read" {
		t.Fatalf("client_credentials: %d %s", a.status, a.body)
	}
	_, c := testkit.Decode(t, a.str("access_token"))
	if c["sub"] != backendApp || c["sid"] != nil {
		t.Fatalf("claims %v", c)
	}
	// client_secret_post works too.
	a = e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {backendApp}, "client_secret": {e.secret}})
	if a.status != 200 {
		t.Fatalf("client_secret_post: %d %s", a.status, a.body)
	}
	// A public client may not.
	wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {publicApp}}), 400, "unauthorized_client", "")
	wantError(t, e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"root"}}, backendApp, e.secret), 400, "invalid_scope", "root")
}

func TestDiscoveryAndHealth(t *testing.T) {
	e := newEnv(t, redisStore(t), time.Hour)
	j := e.get("/.well-known/jwks.json")
	if j.status != 200 || !strings.Contains(j.header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("jwks: %d %v", j.status, j.header)
	}
	ks, _ := j.json["keys"].([]any)
	if len(ks) != 1 {
		t.Fatalf("jwks keys: %s", j.body)
	}
	m := e.get("/.well-known/oauth-authorization-server")
	if m.status != 200 || m.str("issuer") != testIssuer || m.str("token_endpoint") != testIssuer+"/oauth/token" || m.str("jwks_uri") == "" {
		t.Fatalf("metadata: %s", m.body)
	}
	if a := e.get("/healthz"); a.status != 200 {
		t.Fatalf("healthz %d", a.status)
	}
	if a := e.get("/readyz"); a.status != 200 {
		t.Fatalf("readyz %d", a.status)
	}
}
