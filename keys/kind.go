package keys

import (
	"log/slog"
	"strings"
	"time"
)

// Stamp is what a key file's name records of its key:
// "<yyyymmddThhmmssZ of Created>-<ID><suffix of its kind>".
type Stamp struct {
	// ID is the key's kid: the RFC 7638 thumbprint of a signing key (43
	// base64url characters), RefreshKeyIDLen base32 characters derived
	// from a refresh key's secret.
	ID string
	// Created is when the key was made (second precision, UTC). It orders
	// the keys of a kind: their schedule follows from it (see Schedule).
	Created time.Time
}

func (s *Stamp) stamp() *Stamp { return s }

// KeyType is the type of a key of either kind, *Key or *RefreshKey, with
// what the code common to both needs of it: its stamp, whether it can
// sign (a signing key without a private part cannot; every refresh key
// can), and whether it is complete (made by this package's constructors).
type KeyType interface {
	*Key | *RefreshKey
	stamp() *Stamp
	canSign() bool
	complete() bool
}

// A Kind describes one of the two kinds of key a key directory holds,
// once: Signing (*.pem, the JWT signing keys) and Refresh (*.refresh, the
// secrets refresh tokens are derived from). Loading, the schedule,
// pruning, adding a key (dir.go, schedule.go) and following a directory
// (DirSource) are written once for both; S is the kind's set of keys in
// use (*Set, *RefreshSet).
//
// Signing and Refresh are the only two Kind values; they never change.
type Kind[K KeyType, S any] struct {
	name   string // "signing" or "refresh", as `tokend keys rotate --only` names it
	what   string // for errors: what a key of the kind is
	suffix string // file name suffix
	kidLen int    // length of a kid
	// parse reads the contents of a key file; marshal writes them.
	parse   func(data []byte, created time.Time) (K, error)
	marshal func(K) ([]byte, error)
	// timing is the kind's schedule rule: how long a new key waits
	// before it is used, how long a replaced key stays.
	timing func(Lifetimes) Timing
	// set is the set of keys in use: current is the active key, usable
	// every key that stays (pending, active, retired).
	set func(current K, usable ...K) (S, error)
	// For the log of key changes (DirSource): what the kind's keys are
	// called, the message when one becomes active, the attribute that
	// says when a pending key will, and what else to log of a key.
	logName, logActive, logFrom string
	logAttrs                    func(K) []slog.Attr
}

// Name is the kind's name: "signing" or "refresh".
func (kd Kind[K, S]) Name() string { return kd.name }

// Lifetimes are the durations the schedules of both kinds follow from:
// every replica must use the same ones (the same configuration), or they
// disagree on which key is in use.
type Lifetimes struct {
	Reload     time.Duration // how often every replica re-reads the directory (JWT_KEYS_RELOAD_INTERVAL)
	JWKSMaxAge time.Duration // how long a verifier may cache the JWKS (JWKS_MAX_AGE)
	Access     time.Duration // access-token lifetime (JWT_ACCESS_EXPIRES_IN)
	Refresh    time.Duration // refresh-token lifetime (JWT_REFRESH_EXPIRES_IN)
	Leeway     time.Duration // clock leeway of token checks (token.AccessLeeway)
}

// Timing says how the keys of one kind move through their states (see
// Schedule); each kind derives it from the shared Lifetimes by its own
// rule (Kind.Timing). Every replica must use the same Timing, or they
// disagree on which key is in use.
type Timing struct {
	// PrePublish is how long a new key is known — published, verifying —
	// before it is used, so that every replica and every verifier has it
	// by then. The first key of a directory is used at once.
	PrePublish time.Duration
	// RetireAfter is how long a replaced key stays after it stopped
	// being used, so that everything it made has expired when it goes.
	RetireAfter time.Duration
}

// Timing is the kind's schedule for l (docs/design.md, "Signing keys and
// rotation" and "Refresh keys": the two rules differ on purpose).
func (kd Kind[K, S]) Timing(l Lifetimes) Timing { return kd.timing(l) }

// MissingKeysError is the error of a load from a directory that holds no
// key able to sign of a kind the load needs, or that does not exist.
type MissingKeysError struct {
	Dir   string
	Kinds []string // the kinds missing ("signing", "refresh"); with NoDir, the kinds the load needed
	NoDir bool     // Dir does not exist
	what  []string
}

func (e *MissingKeysError) Error() string {
	if e.NoDir {
		return "keys: key directory " + e.Dir + " does not exist"
	}
	return "keys: no " + strings.Join(e.what, " and no ") + " in " + e.Dir
}

// missing adds kd to e (a new error when e is nil).
func missing[K KeyType, S any](e *MissingKeysError, dir string, noDir bool, kd Kind[K, S]) *MissingKeysError {
	if e == nil {
		e = &MissingKeysError{Dir: dir, NoDir: noDir}
	}
	e.Kinds = append(e.Kinds, kd.name)
	e.what = append(e.what, kd.what)
	return e
}
