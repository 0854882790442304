package store

import (
	"strings"
	"testing"
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
