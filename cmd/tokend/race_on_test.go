//go:build race

package main

// raceEnabled: the tests run with -race, so tokendBinary builds the binary
// with -race too — it reuses the packages already compiled for the tests
// (a link, not a rebuild) and catches races in the real processes.
const raceEnabled = true
