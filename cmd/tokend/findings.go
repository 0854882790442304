package main

import (
	"context"
	"errors"
	"log/slog"
)

// level is how a finding judges what it checked.
type level int

const (
	levelOK   level = iota // as tokend needs it
	levelWarn              // works, with a cost or a risk the message names
	levelFail              // broken or unsafe: serve refuses to start, or logs an error
)

func (l level) String() string {
	switch l {
	case levelWarn:
		return "WARN"
	case levelFail:
		return "FAIL"
	}
	return "OK"
}

// A finding is one verdict of a check of the deployment. The rules that
// make findings are written once and used twice: `tokend serve` logs them
// at start-up — a WARN as a warning, a FAIL as an error, or it refuses to
// start on a FAIL that refuses (logFindings) — and `tokend doctor` prints
// them (docs/operations.md, "tokend doctor"). So doctor's verdict is what
// serve does with the same configuration.
type finding struct {
	check   string // a stable name: "redis.maxmemory-policy", "keys.permissions" (docs/operations.md lists them)
	level   level
	node    string      // the Redis node it is about, on a Cluster; "" otherwise
	message string      // what is so, in words
	fix     string      // what to do about it; "" when nothing is to be done
	refuses bool        // a FAIL serve refuses to start on
	attrs   []slog.Attr // the figures for serve's log line
}

// newOK, newWarn and newFail make findings of check.
func newOK(check, message string) finding { return finding{check: check, message: message} }

func newWarn(check, message, fix string, attrs ...slog.Attr) finding {
	return finding{check: check, level: levelWarn, message: message, fix: fix, attrs: attrs}
}

func newFail(check, message, fix string, attrs ...slog.Attr) finding {
	return finding{check: check, level: levelFail, message: message, fix: fix, attrs: attrs}
}

// refusing marks a FAIL as one serve refuses to start on.
func (f finding) refusing() finding { f.refuses = true; return f }

// on names the Redis node a finding is about.
func (f finding) on(node string) finding { f.node = node; return f }

// text is the message and its fix, as serve logs it and refuses with it.
func (f finding) text() string {
	if f.fix == "" {
		return f.message
	}
	return f.message + "; " + f.fix
}

// logFindings is what serve does with findings: a WARN is logged as a
// warning and a FAIL as an error, with the check's name (check=...),
// except that the FAILs that refuse are returned, joined, for serve to
// stop with. OK findings are not logged.
func logFindings(ctx context.Context, log *slog.Logger, fs []finding) error {
	var refusals []error
	for _, f := range fs {
		attrs := append([]slog.Attr{slog.String("check", f.check)}, f.attrs...)
		if f.node != "" {
			attrs = append(attrs, slog.String("node", f.node))
		}
		switch {
		case f.level == levelWarn:
			log.LogAttrs(ctx, slog.LevelWarn, f.text(), attrs...)
		case f.level == levelFail && f.refuses:
			refusals = append(refusals, errors.New(f.text()))
		case f.level == levelFail:
			log.LogAttrs(ctx, slog.LevelError, f.text(), attrs...)
		}
	}
	return errors.Join(refusals...)
}
