// Package fields holds the small encodings both store backends apply to
// what they are given, so that store/redisstore and store/memstore keep
// values exactly alike: times to the millisecond, space-joined word lists,
// the defaults for a missing time or revocation reason.
package fields

import (
	"strings"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
)

// Millis encodes t as unix milliseconds; the zero time is 0.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Time decodes unix milliseconds; 0 is the zero time.
func Time(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Round truncates t to the millisecond in the local zone, as a round trip
// through Millis and Time does.
func Round(t time.Time) time.Time { return Time(Millis(t)) }

// NowOr returns t, or the wall clock if t is zero.
func NowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// ReasonOr returns r, or store.ReasonRevoked if r is empty.
func ReasonOr(r string) string {
	if r == "" {
		return store.ReasonRevoked
	}
	return r
}

// JoinRoles returns a user's roles space-joined, the form both stores
// keep, or credential.Roles's error: a role with a space of any kind in it
// would be read back as two roles.
func JoinRoles(roles []string) (string, error) {
	if err := credential.Roles(roles); err != nil {
		return "", err
	}
	return strings.Join(roles, " "), nil
}

// Words splits a space-joined list; empty gives nil.
func Words(v string) []string {
	f := strings.Fields(v)
	if len(f) == 0 {
		return nil
	}
	return f
}
