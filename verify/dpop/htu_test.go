package dpop

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// The normalisation RFC 9449 §4.3 asks for: RFC 3986 §6.2.2 and §6.2.3.
func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/orders":           "https://api.example.com/orders",
		"HTTPS://API.Example.COM/orders":           "https://api.example.com/orders",
		"https://api.example.com/Orders":           "https://api.example.com/Orders", // the path is case-sensitive
		"https://api.example.com:443/orders":       "https://api.example.com/orders",
		"https://api.example.com:/orders":          "https://api.example.com/orders",
		"https://api.example.com:0443/orders":      "https://api.example.com/orders",
		"http://api.example.com:80/orders":         "http://api.example.com/orders",
		"http://api.example.com:443/orders":        "http://api.example.com:443/orders",
		"https://api.example.com:8443/orders":      "https://api.example.com:8443/orders",
		"https://api.example.com":                  "https://api.example.com/",
		"https://api.example.com?x":                "https://api.example.com/",
		"https://api.example.com/orders?id=1#top":  "https://api.example.com/orders",
		"https://api.example.com/orders#a?b":       "https://api.example.com/orders",
		"https://api.example.com/%6frders":         "https://api.example.com/orders",
		"https://api.example.com/a%2fb":            "https://api.example.com/a%2Fb",
		"https://api.example.com/a%7Eb%2D":         "https://api.example.com/a~b-",
		"https://api.example.com/a/./b/../c":       "https://api.example.com/a/c",
		"https://api.example.com/a/%2E%2E/c":       "https://api.example.com/c",
		"https://api.example.com/../../a":          "https://api.example.com/a",
		"https://api.example.com/a/..":             "https://api.example.com/",
		"https://api.example.com/a/b/..":           "https://api.example.com/a/",
		"https://api.example.com/a/{b}":            "",
		"https://api.example.com/a\\b":             "",
		"https://api.exa`mple.com/":                "",
		"https://api_1.example.com/":               "https://api_1.example.com/",
		"https://[::1%25eth0]/":                    "",
		"https://[v1.x]/":                          "",
		"https://api.example.com/a//b":             "https://api.example.com/a//b",
		"https://[::1]:443/x":                      "https://[::1]/x",
		"https://[2001:DB8::1]:8443/x":             "https://[2001:db8::1]:8443/x",
		"https://api.example.com/é":                "",
		"https://api.example.com/a b":              "",
		"https://api.example.com/%zz":              "",
		"https://api.example.com/%4":               "",
		"https://user:pw@api.example.com/":         "",
		"https://api.example.com%2F/":              "",
		"ftp://api.example.com/":                   "",
		"https:/api.example.com/":                  "",
		"//api.example.com/":                       "",
		"https:///x":                               "",
		"https://:443/x":                           "",
		"https://api.example.com:x/":               "",
		"https://api.example.com:99999/":           "",
		"https://api.example.com:123456/":          "",
		"https://[::1/x":                           "",
		"https://[]/x":                             "",
		"https://[::1]x/":                          "",
		"https://a]/":                              "",
		"":                                         "",
		"https://a\x00.example.com/":               "",
		"https://api.example.com/x\r\nHost: evil/": "",
	} {
		got, err := normalizeURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}

// FuzzNormalizeURL: what normalizeURL accepts, net/url parses (without
// its query and fragment) to the same scheme and host; the result has no query or fragment, a path from
// "/", no dot segments; and normalising again changes nothing.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{"https://api.example.com/orders", "HTTP://A:80/%2e/b/../c?d#e", "https://[::1]:8443/%7e", "https://x:0/", "https://x/a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeURL(s)
		if err != nil {
			return
		}
		again, err := normalizeURL(n)
		if err != nil || again != n {
			t.Fatalf("%q → %q → %q %v", s, n, again, err)
		}
		u, err := url.Parse(n)
		if err != nil {
			t.Fatalf("%q → %q, which net/url refuses: %v", s, n, err)
		}
		// Query and fragment are ignored, whatever they hold.
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i]
		}
		o, err := url.Parse(s)
		if err != nil {
			t.Fatalf("%q accepted, which net/url refuses: %v", s, err)
		}
		sameHost := u.Hostname() == strings.ToLower(o.Hostname())
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			b, err := netip.ParseAddr(o.Hostname())
			sameHost = err == nil && a == b
		}
		if u.Scheme != strings.ToLower(o.Scheme) || !sameHost || u.RawQuery != "" || u.Fragment != "" ||
			!strings.HasPrefix(u.EscapedPath(), "/") || strings.Contains(u.EscapedPath(), "/./") || strings.Contains(u.EscapedPath(), "/../") {
			t.Fatalf("%q → %q (%+v)", s, n, u)
		}
	})
}
