package credential

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.mau.fi/util/confusable"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"

	"github.com/tokend/tokend/token"
)

// MaxUsernameBytes bounds a username: an email address fits (RFC 5321
// §4.5.3.1.3).
const MaxUsernameBytes = 254

// Password policy, the same for self-registration and the CLI (NIST SP
// 800-63B-4 §3.1.1.2: a length floor, a generous ceiling, no composition
// rules, and no password from a list of common ones — see
// commonPasswordsText). Lengths count Unicode characters; the byte bound
// caps the argon2id input.
const (
	MinPasswordChars = 10
	MaxPasswordChars = 256
	MaxPasswordBytes = 1024
)

// Username returns the canonical form of a username (or email address), or
// an error saying what is wrong with it. It is the one username rule of
// tokend: signup, the CLI and sign-in all pass names through it, and only
// canonical names are stored.
//
// The canonical form is the PRECIS UsernameCaseMapped profile (RFC 8265
// §3.3): full-width characters are mapped to their normal width, letters
// are case-folded and the result is NFC-normalised, and characters outside
// the PRECIS IdentifierClass (spaces, controls, zero-width and other
// invisible characters, symbols like U+2665) are refused. So "Ａｌｉｃｅ",
// "ALICE" and "alice" are one account, an NFD "é" is the NFC one, and
// "İx" stays apart from "ix" instead of squatting it. On top of PRECIS, the
// characters of a name must come from one script (Han, Hiragana and
// Katakana count as one; characters of the Common and Inherited scripts —
// ASCII digits, punctuation, most combining accents — go with any), which
// refuses look-alikes such as a Latin name with a Cyrillic "о", Devanagari
// digits ("b००k") or a Hebrew point in it. A name in one script that looks
// like another name (all-Cyrillic "асе" beside "ace") is caught by
// Skeleton, against the names that exist.
func Username(s string) (string, error) {
	if s == "" {
		return "", errors.New("username is empty")
	}
	if len(s) > 4*MaxUsernameBytes {
		return "", fmt.Errorf("username must be at most %d bytes", MaxUsernameBytes)
	}
	if !utf8.ValidString(s) {
		return "", errors.New("username must be valid UTF-8")
	}
	out, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return "", errors.New("username must not contain spaces, control characters, invisible characters or symbols (PRECIS username rules, RFC 8265)")
	}
	if out == "" {
		return "", errors.New("username is empty")
	}
	if len(out) > MaxUsernameBytes {
		return "", fmt.Errorf("username must be at most %d bytes", MaxUsernameBytes)
	}
	if a, b := scripts(out); b != "" {
		return "", fmt.Errorf("username mixes characters of two scripts (%s and %s)", a, b)
	}
	return out, nil
}

// cjk is the script group Japanese names mix freely.
var cjk = map[string]bool{"Han": true, "Hiragana": true, "Katakana": true}

// scripts returns the first two distinct scripts of the characters of s,
// or "" for b when all share one (characters of the Common and Inherited
// scripts belong to every script).
func scripts(s string) (a, b string) {
	for _, r := range s {
		sc := scriptOf(r)
		if sc == "" || sc == a || (cjk[sc] && cjk[a]) {
			continue
		}
		if a == "" {
			a = sc
			continue
		}
		return a, sc
	}
	return a, ""
}

// scriptOf names the Unicode script of r; "" for Common and Inherited.
func scriptOf(r rune) string {
	if r < 0x80 {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return "Latin"
		}
		return "" // ASCII digits and punctuation
	}
	for _, name := range []string{"Latin", "Cyrillic", "Greek", "Han", "Hiragana", "Katakana", "Arabic", "Hebrew"} {
		if unicode.Is(unicode.Scripts[name], r) {
			return name
		}
	}
	for name, table := range unicode.Scripts {
		if unicode.Is(table, r) {
			if name == "Common" || name == "Inherited" {
				return ""
			}
			return name
		}
	}
	return ""
}

// Skeleton returns the key under which a canonical username (Username's
// result) meets the names it could be mistaken for: the UTS #39 skeleton
// (Unicode confusables.txt, through go.mau.fi/util/confusable), case-folded
// and in NFD, so that "асе" (Cyrillic) and "ace", "b0b" and "bob", "rn"
// and "m" have one key. Stores index users under it and refuse a second
// name with the same skeleton (docs/security.md, "Look-alike usernames").
// A skeleton is a key, never a name to show.
func Skeleton(name string) string {
	return norm.NFD.String(cases.Fold().String(confusable.Skeleton(name)))
}

// PasswordProblem returns what is wrong with password under the password
// policy, or "".
func PasswordProblem(username, password string) string {
	if len(password) > MaxPasswordBytes {
		return fmt.Sprintf("password must be at most %d bytes", MaxPasswordBytes)
	}
	if !utf8.ValidString(password) {
		return "password must be valid UTF-8"
	}
	n := utf8.RuneCountInString(password)
	if n < MinPasswordChars {
		return fmt.Sprintf("password must be at least %d characters", MinPasswordChars)
	}
	if n > MaxPasswordChars {
		return fmt.Sprintf("password must be at most %d characters", MaxPasswordChars)
	}
	if strings.EqualFold(password, username) {
		return "password must not be the same as the username"
	}
	first, _ := utf8.DecodeRuneInString(password)
	if strings.Trim(password, string(first)) == "" {
		return "password must not be one character repeated"
	}
	if commonPassword(password) {
		return "password is on a list of commonly used passwords seen in breaches; choose another"
	}
	return ""
}

// ClientIDProblem returns what is wrong with a client id, or "". A client
// id is 1 to 64 characters from A-Z a-z 0-9 - . _ ~ (RFC 3986 unreserved):
// characters every client library sends unchanged in HTTP Basic, where
// RFC 6749 §2.3.1 form-encodes the id and many libraries do not (with "+"
// or "%" in an id, requests-oauthlib and authlib fail to authenticate).
// It must not have the form of a user id (token.ValidID): a client's own
// access tokens (client_credentials) carry its id as sub, as a user's
// carry the user id, so a client named like a user would be that user to
// a resource server. User ids are all made by token.NewID, so neither can
// take the other's.
func ClientIDProblem(id string) string {
	if id == "" || len(id) > 64 {
		return "a client id is 1 to 64 characters"
	}
	if token.ValidID(id) {
		return "a client id must not have the form of a user id (26 characters of a-z and 2-7): the client's access tokens carry its id as sub, as a user's carry the user id"
	}
	if !unreserved(id) {
		return "a client id may contain only letters A-Z and a-z, digits and - . _ ~"
	}
	return ""
}
