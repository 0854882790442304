package credential

import (
	"strings"
	"testing"
)

func TestUsername(t *testing.T) {
	same := map[string]string{
		"alice":             "alice",
		"Alice":             "alice",
		"ＡＬＩＣＥ":             "alice",     // fullwidth
		"jose\u0301":        "jos\u00e9", // NFD to NFC
		"jos\u00e9":         "jos\u00e9",
		"Alice@Example.com": "alice@example.com",
		"ΑΒΓ":               "αβγ",
		"山田たろう":             "山田たろう",    // Han and Hiragana are one group
		"İx":                "i\u0307x", // not "ix": no squatting
		"dora-2.0_x+tag":    "dora-2.0_x+tag",
	}
	for in, want := range same {
		got, err := Username(in)
		if err != nil || got != want {
			t.Errorf("Username(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "a b", "a\tb", "a\x00b", "a\x7fb", "al\u200bice", "\u200b", "b\u043eb", "pаypal", "♥", "a\xffb",
		strings.Repeat("d", MaxUsernameBytes+1), strings.Repeat("x", 1<<16),
	} {
		if got, err := Username(bad); err == nil {
			t.Errorf("Username(%q) = %q, want an error", bad, got)
		}
	}
	if _, err := Username(strings.Repeat("d", MaxUsernameBytes)); err != nil {
		t.Errorf("a %d-byte name: %v", MaxUsernameBytes, err)
	}
}

func TestClientIDProblem(t *testing.T) {
	for _, ok := range []string{"web", "my-app_1.0~x", strings.Repeat("a", 64)} {
		if p := ClientIDProblem(ok); p != "" {
			t.Errorf("%q: %s", ok, p)
		}
	}
	for _, bad := range []string{"", "a+b", "a%20b", "a:b", "a b", "ü", "a/b", strings.Repeat("a", 65)} {
		if ClientIDProblem(bad) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}
