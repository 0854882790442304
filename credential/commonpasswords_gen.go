//go:build ignore

// Generates common-passwords.txt, the list PasswordProblem refuses (see
// commonpasswords.go for its source):
//
//	go run commonpasswords_gen.go 10_million_password_list_top_1M.txt > common-passwords.txt
//
// It keeps the entries that the rest of the password policy would let
// through on length alone (MinPasswordChars to MaxPasswordChars
// characters, valid UTF-8), lower-cased, without duplicates, sorted.
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

const minChars, maxChars = 10, 256 // credential.MinPasswordChars, MaxPasswordChars

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run commonpasswords_gen.go SOURCE > common-passwords.txt")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.ToLower(strings.TrimRight(sc.Text(), "\r"))
		if n := utf8.RuneCountInString(w); utf8.ValidString(w) && n >= minChars && n <= maxChars && !strings.Contains(w, "\n") {
			seen[w] = true
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	list := make([]string, 0, len(seen))
	for w := range seen {
		list = append(list, w)
	}
	slices.Sort(list)
	w := bufio.NewWriter(os.Stdout)
	for _, p := range list {
		fmt.Fprintln(w, p)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
