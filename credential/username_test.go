package credential

import (
	"strings"
	"testing"

	"github.com/tokend/tokend/token"
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
		"b\u0966\u0966k", // Devanagari digits in a Latin name
		"do\u05c5t",      // a Hebrew point on Latin letters
		"\u0430\u0441e",  // Cyrillic а and с, Latin e
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

// Skeleton gives look-alike names one key: whole-script look-alikes
// (Cyrillic "асе" for "ace"), digits for letters, "rn" for "m"; names
// that do not look alike keep keys of their own.
func TestSkeleton(t *testing.T) {
	canon := func(s string) string {
		t.Helper()
		c, err := Username(s)
		if err != nil {
			t.Fatalf("Username(%q): %v", s, err)
		}
		return c
	}
	for a, b := range map[string]string{
		"ace":       "\u0430\u0441\u0435", // all Cyrillic
		"bob":       "b0b",
		"mary":      "rnary",
		"user1":     "userl",
		"alice":     "ALICE",
		"paypal":    "\u0440\u0430\u0443\u0440\u0430\u04cf", // all Cyrillic
		"jos\u00e9": "jose\u0301",
	} {
		if ka, kb := Skeleton(canon(a)), Skeleton(canon(b)); ka != kb {
			t.Errorf("Skeleton(%q) = %q, Skeleton(%q) = %q: want one key", a, ka, b, kb)
		}
	}
	for a, b := range map[string]string{"ace": "acme", "bob": "rob", "alice": "alica", "山田": "山本", "jose": "jos\u00e9"} {
		if Skeleton(canon(a)) == Skeleton(canon(b)) {
			t.Errorf("%q and %q share the key %q", a, b, Skeleton(canon(a)))
		}
	}
}

func TestClientIDProblem(t *testing.T) {
	for _, ok := range []string{"web", "my-app_1.0~x", strings.Repeat("a", 64)} {
		if p := ClientIDProblem(ok); p != "" {
			t.Errorf("%q: %s", ok, p)
		}
	}
	for _, bad := range []string{"", "a+b", "a%20b", "a:b", "a b", "ü", "a/b", strings.Repeat("a", 65), token.NewID()} {
		if ClientIDProblem(bad) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Common passwords are refused whatever their case; the list is sorted,
// lower-case and within the length rule, as the binary search needs.
func TestPasswordProblemCommonPasswords(t *testing.T) {
	for _, pw := range []string{"password12", "Password1!", "PASSWORD12", "qwertyuiop", "1234567890"} {
		if p := PasswordProblem("alice", pw); !strings.Contains(p, "commonly used") {
			t.Errorf("PasswordProblem(%q) = %q, want the common-password refusal", pw, p)
		}
	}
	for _, pw := range []string{"correct horse battery staple", "a fine long password", "Password1!x7"} {
		if p := PasswordProblem("alice", pw); p != "" {
			t.Errorf("PasswordProblem(%q) = %q", pw, p)
		}
	}
	list := commonPasswords()
	if len(list) != 112130 {
		t.Fatalf("%d common passwords, want the 112,130 the doc comment names", len(list))
	}
	for i, p := range list {
		if n := len([]rune(p)); p != strings.ToLower(p) || n < MinPasswordChars || n > MaxPasswordChars || i > 0 && list[i-1] >= p {
			t.Fatalf("entry %d %q: not lower-case, out of the length rule, or out of order", i, p)
		}
	}
}
