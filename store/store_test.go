package store

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTruncateUserAgent(t *testing.T) {
	pad := strings.Repeat("a", MaxUserAgent-1)
	for _, c := range []struct{ in, want string }{
		{"curl/8", "curl/8"},
		{pad + "b", pad + "b"},  // exactly the limit
		{pad + "bc", pad + "b"}, // one byte over
		{pad + "é", pad},        // a 2-byte character across the limit
		{pad + "€uro", pad},     // a 3-byte one
		{strings.Repeat("€", 200), strings.Repeat("€", 85)}, // 255 bytes: never split
	} {
		got := TruncateUserAgent(c.in)
		if got != c.want || len(got) > MaxUserAgent || !utf8.ValidString(got) {
			t.Errorf("TruncateUserAgent(%d bytes) = %d bytes %q…, want %d bytes", len(c.in), len(got), got[:min(len(got), 8)], len(c.want))
		}
	}
}

// Narrows: a new secret, a grant, scope or audience taken away, DPoP newly
// required; adding (or no longer requiring DPoP) is not.
// TokenEnded: at or before TokensNotBefore, never after; never when zero.
func TestClientChanges(t *testing.T) {
	old := Client{ID: "svc", SecretHash: []byte("a"), Grants: []string{"client_credentials", "password"}, Scopes: []string{"read", "events:read"},
		Audiences: []string{"orders"}}
	change := func(f func(c *Client)) Client {
		c := old
		c.Grants, c.Scopes, c.Audiences = slices.Clone(old.Grants), slices.Clone(old.Scopes), slices.Clone(old.Audiences)
		f(&c)
		return c
	}
	for name, c := range map[string]Client{
		"secret":        change(func(c *Client) { c.SecretHash = []byte("b") }),
		"grant gone":    change(func(c *Client) { c.Grants = []string{"password"} }),
		"scope gone":    change(func(c *Client) { c.Scopes = []string{"read"} }),
		"scopes gone":   change(func(c *Client) { c.Scopes = nil }),
		"audience gone": change(func(c *Client) { c.Audiences = nil }),
		"DPoP required": change(func(c *Client) { c.RequireDPoP = true }),
	} {
		if !Narrows(old, c) {
			t.Errorf("%s: Narrows = false", name)
		}
	}
	for name, c := range map[string]Client{
		"same":           old,
		"grant added":    change(func(c *Client) { c.Grants = append(c.Grants, "refresh_token") }),
		"scope added":    change(func(c *Client) { c.Scopes = append(c.Scopes, "write") }),
		"reordered":      change(func(c *Client) { slices.Reverse(c.Scopes) }),
		"audience added": change(func(c *Client) { c.Audiences = append(c.Audiences, "billing") }),
	} {
		if Narrows(old, c) {
			t.Errorf("%s: Narrows = true", name)
		}
	}
	nb := time.Unix(1000, 400e6)
	c := Client{TokensNotBefore: nb}
	for iat, want := range map[int64]bool{999: true, 1000: true, 1001: false} {
		if got := c.TokenEnded(time.Unix(iat, 0)); got != want {
			t.Errorf("TokenEnded(iat %d) with not-before 1000.4 = %v", iat, got)
		}
	}
	if (Client{}).TokenEnded(time.Unix(0, 0)) {
		t.Error("a zero TokensNotBefore ends a token")
	}
}
