package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"
)

// promptPassword reads a new password for the admin CLI: from a terminal,
// with a no-echo prompt (on stderr) asked twice; otherwise the first line
// of standard input (readPassword), so `echo -n pw | tokend ...` and
// pipelines work. A password never comes from the command line.
func (c *cli) promptPassword(what string) (string, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return readPassword(c.stdin)
	}
	read := func(prompt string) (string, error) {
		fmt.Fprint(c.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("read password from the terminal: %w", err)
		}
		return string(b), nil
	}
	pw, err := read(what + ": ")
	if err != nil {
		return "", err
	}
	if len(pw) < minPasswordLen {
		return "", fmt.Errorf("the password must be at least %d characters", minPasswordLen)
	}
	again, err := read("Repeat it: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}
