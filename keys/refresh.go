package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Refresh keys are the server-held secrets that refresh tokens are derived
// from (docs/design.md, "Refresh tokens: derived, not stored"): a refresh
// token's MAC is HMAC-SHA256 under one of them, so the server can check
// any generation of any session without asking Redis, and nothing in Redis
// lets anyone make a token. They live in the key directory beside the
// signing keys, never in Redis, and rotate on the same schedule (Schedule):
// the newest key whose start has passed is used for new sessions; a
// session keeps the key it started with, so an older key stays usable
// until every session that started with it has expired.
//
// A refresh key file is "<yyyymmddThhmmssZ>-<kid>.refresh" holding one PEM
// block of type "TOKEND REFRESH KEY" with the 32 secret bytes. The signing
// key loader reads only *.pem files, so it never sees them.
const (
	// RefreshKeySize is the size of a refresh key's secret in bytes.
	RefreshKeySize = 32
	// RefreshKeyIDLen is the length of a refresh key's id (kid): 40 bits
	// in lower-case base32.
	RefreshKeyIDLen = 8

	refreshSuffix  = ".refresh"
	refreshPEMType = "TOKEND REFRESH KEY"
	// refreshKIDLabel is what a key's id is derived from: kid = the first
	// 40 bits of HMAC-SHA256(secret, refreshKIDLabel). A PRF output, it
	// tells nothing about the secret, and a file whose name does not
	// match its contents is caught on load.
	refreshKIDLabel = "tokend-refresh-kid-v1"
)

var kidEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RefreshKey is one refresh key. Its secret never leaves the package except
// into a MAC or a key file: String, GoString and LogValue (value receivers,
// so a copy prints the same) show only the kid.
type RefreshKey struct {
	ID      string    // kid: RefreshKeyIDLen lower-case base32 characters
	Created time.Time // when the key was made (second precision, UTC); orders the keys
	secret  [RefreshKeySize]byte
	macs    *sync.Pool // of *macState: HMAC-SHA256 keyed with secret
}

// GenerateRefreshKey makes a new random refresh key. Created is now,
// truncated to the second (the precision of key file names).
func GenerateRefreshKey() *RefreshKey {
	var secret [RefreshKeySize]byte
	_, _ = rand.Read(secret[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return newRefreshKey(secret, time.Now().UTC().Truncate(time.Second))
}

func newRefreshKey(secret [RefreshKeySize]byte, created time.Time) *RefreshKey {
	k := &RefreshKey{Created: created, secret: secret}
	k.macs = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, k.secret[:])} }}
	var id [sha256.Size]byte
	k.MAC(id[:0], []byte(refreshKIDLabel))
	k.ID = kidEncoding.EncodeToString(id[:5])
	return k
}

// MAC appends HMAC-SHA256(secret, msg) to dst and returns the result. It is
// safe for concurrent use, and for messages of up to 128 bytes neither msg
// nor dst escapes (a refresh token's MAC costs no allocation).
func (k *RefreshKey) MAC(dst, msg []byte) []byte {
	m := k.macs.Get().(*macState)
	m.h.Reset()
	if len(msg) <= len(m.buf) {
		n := copy(m.buf[:], msg)
		m.h.Write(m.buf[:n])
	} else {
		m.h.Write(bytes.Clone(msg))
	}
	sum := m.h.Sum(m.sum[:0])
	dst = append(dst, sum...)
	k.macs.Put(m)
	return dst
}

// macState is a keyed HMAC with buffers, so that MAC's arguments do not
// escape through the hash.Hash interface.
type macState struct {
	h   hash.Hash
	buf [128]byte
	sum [sha256.Size]byte
}

// String names the key by its kid; the secret is never printed.
func (k RefreshKey) String() string { return "refresh key " + k.ID }

// GoString is String, so %#v does not print the secret either.
func (k RefreshKey) GoString() string { return k.String() }

// LogValue makes slog print the kid only.
func (k RefreshKey) LogValue() slog.Value { return slog.StringValue(k.ID) }

// MarshalPEM encodes the key as a "TOKEND REFRESH KEY" PEM block.
func (k *RefreshKey) MarshalPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: refreshPEMType, Bytes: k.secret[:]})
}

// ParseRefreshPEM parses a key written by MarshalPEM: exactly one
// "TOKEND REFRESH KEY" block of RefreshKeySize bytes.
func ParseRefreshPEM(data []byte, created time.Time) (*RefreshKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("keys: no PEM block found")
	}
	if block.Type != refreshPEMType {
		return nil, fmt.Errorf("keys: PEM block type %q is not %q", block.Type, refreshPEMType)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("keys: refresh key PEM must have no headers")
	}
	if more, _ := pem.Decode(rest); more != nil {
		return nil, errors.New("keys: more than one PEM block")
	}
	if len(block.Bytes) != RefreshKeySize {
		return nil, fmt.Errorf("keys: refresh key is %d bytes, want %d", len(block.Bytes), RefreshKeySize)
	}
	return newRefreshKey([RefreshKeySize]byte(block.Bytes), created), nil
}

// RefreshFileName returns the name WriteRefreshFile gives k:
// "<UTC yyyymmddThhmmssZ of k.Created>-<kid>.refresh".
func RefreshFileName(k *RefreshKey) string {
	return k.Created.UTC().Format(fileTimeLayout) + "-" + k.ID + refreshSuffix
}

// WriteRefreshFile stores k in dir under RefreshFileName(k), with the same
// guarantees as WriteFile: mode 0600, complete or absent, never
// overwriting. It returns the file's path.
func WriteRefreshFile(dir string, k *RefreshKey) (string, error) {
	return writeNew(dir, RefreshFileName(k), k.MarshalPEM())
}

// RefreshSet is an immutable set of refresh keys: the current one, which
// new sessions use, and every key that still verifies (the current one
// included). Safe for concurrent use; to change keys, build a new set.
type RefreshSet struct {
	current *RefreshKey
	keys    []*RefreshKey
	byID    map[string]*RefreshKey
}

// NewRefreshSet returns a set whose current key is current, verifying with
// current and usable. Keys whose kid is already in the set are dropped.
func NewRefreshSet(current *RefreshKey, usable ...*RefreshKey) (*RefreshSet, error) {
	if current == nil {
		return nil, errors.New("keys: no current refresh key")
	}
	s := &RefreshSet{current: current, byID: make(map[string]*RefreshKey, 1+len(usable))}
	for _, k := range append([]*RefreshKey{current}, usable...) {
		if k == nil || k.macs == nil {
			return nil, errors.New("keys: incomplete refresh key (use GenerateRefreshKey or ParseRefreshPEM)")
		}
		if _, dup := s.byID[k.ID]; dup {
			continue
		}
		s.byID[k.ID] = k
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// EphemeralRefresh returns a set with one fresh random key, kept only in
// memory (development: refresh tokens become invalid when the process
// exits, and replicas cannot check each other's).
func EphemeralRefresh() *RefreshSet {
	s, _ := NewRefreshSet(GenerateRefreshKey())
	return s
}

// Current returns the key new sessions use.
func (s *RefreshSet) Current() *RefreshKey { return s.current }

// Lookup returns the usable key with the given kid.
func (s *RefreshSet) Lookup(kid string) (*RefreshKey, bool) {
	k, ok := s.byID[kid]
	return k, ok
}

// Keys returns the usable keys, the current one first.
func (s *RefreshSet) Keys() []*RefreshKey { return slices.Clone(s.keys) }

// RefreshStatus is a refresh key's state at one instant (see
// RefreshSchedule). "Signs" means "is used for new sessions".
type RefreshStatus struct {
	Key        *RefreshKey
	State      State // pending, active, retired or expired
	SignsFrom  time.Time
	SignsUntil time.Time // zero while there is no newer key
	DroppedAt  time.Time // SignsUntil + Timing.RetireAfter; zero while SignsUntil is
}

// RefreshSchedule is Schedule for refresh keys (every refresh key can
// sign): ks sorted oldest first; the oldest is used from the start, every
// later one from Created + t.PrePublish; a replaced key stays usable for
// t.RetireAfter after it stopped being used for new sessions. For refresh
// keys the server uses PrePublish = JWT_KEYS_RELOAD_INTERVAL (every
// replica can verify a key's tokens before any replica mints one) and
// RetireAfter = JWT_REFRESH_EXPIRES_IN + leeway (every session that
// started with it has expired).
func RefreshSchedule(ks []*RefreshKey, t Timing, now time.Time) []RefreshStatus {
	sts := schedule(len(ks), func(i int) (time.Time, bool) { return ks[i].Created, true }, t, now)
	out := make([]RefreshStatus, len(ks))
	for i, st := range sts {
		out[i] = RefreshStatus{Key: ks[i], State: st.State, SignsFrom: st.SignsFrom, SignsUntil: st.SignsUntil, DroppedAt: st.DroppedAt}
	}
	return out
}

// refreshSetOf builds the set sts describe: the active key is current;
// pending, active and retired keys verify. Pending keys verify so that a
// replica that starts using a key before another (clock skew) is
// understood by it. Nil if sts has no key.
func refreshSetOf(sts []RefreshStatus) *RefreshSet {
	var current *RefreshKey
	usable := make([]*RefreshKey, 0, len(sts))
	for i := len(sts) - 1; i >= 0; i-- {
		st := sts[i]
		if st.State == StateActive {
			current = st.Key
		}
		if st.State.Published() {
			usable = append(usable, st.Key)
		}
	}
	if current == nil {
		return nil
	}
	s, _ := NewRefreshSet(current, usable...)
	return s
}

// refreshNextChange is nextChange for refresh keys.
func refreshNextChange(sts []RefreshStatus, now time.Time) time.Time {
	conv := make([]Status, len(sts))
	for i, st := range sts {
		conv[i] = Status{State: st.State, SignsFrom: st.SignsFrom, SignsUntil: st.SignsUntil, DroppedAt: st.DroppedAt}
	}
	return nextChange(conv, now)
}

// loadedRefresh is a refresh key with the file it came from.
type loadedRefresh struct {
	key  *RefreshKey
	path string
}

// parseRefreshFileName splits a name made by RefreshFileName.
func parseRefreshFileName(name string) (created time.Time, kid string, ok bool) {
	base, ok := strings.CutSuffix(name, refreshSuffix)
	if !ok || len(base) != len(fileTimeLayout)+1+RefreshKeyIDLen || base[len(fileTimeLayout)] != '-' {
		return time.Time{}, "", false
	}
	created, err := time.Parse(fileTimeLayout, base[:len(fileTimeLayout)])
	if err != nil {
		return time.Time{}, "", false
	}
	return created, base[len(fileTimeLayout)+1:], true
}

func isRefreshFile(name string) bool {
	return strings.HasSuffix(name, refreshSuffix) && !strings.HasPrefix(name, ".")
}

func loadRefreshFile(path, name string) (*RefreshKey, error) {
	created, kid, ok := parseRefreshFileName(name)
	if !ok {
		return nil, fmt.Errorf("keys: %s: file name must be <yyyymmddThhmmssZ>-<kid>%s (as written by WriteRefreshFile)", path, refreshSuffix)
	}
	data, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseRefreshPEM(data, created)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	if k.ID != kid {
		return nil, fmt.Errorf("keys: %s: file name says kid %q but the key's id is %q", path, kid, k.ID)
	}
	return k, nil
}

// loadRefreshDir parses every refresh key file in dir, oldest first.
func loadRefreshDir(dir string) ([]loadedRefresh, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: read key directory: %w", err)
	}
	var ls []loadedRefresh
	for _, e := range entries {
		if !isRefreshFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		k, err := loadRefreshFile(path, e.Name())
		if err != nil {
			return nil, err
		}
		ls = append(ls, loadedRefresh{k, path})
	}
	sortLoadedRefresh(ls)
	return ls, nil
}

// sortLoadedRefresh sorts oldest first by Created, ties broken by path.
func sortLoadedRefresh(ls []loadedRefresh) {
	sort.Slice(ls, func(i, j int) bool {
		if c := ls[i].key.Created.Compare(ls[j].key.Created); c != 0 {
			return c < 0
		}
		return ls[i].path < ls[j].path
	})
}

// LoadRefreshDir returns dir's refresh keys, oldest first. Any bad refresh
// key file fails the load with an error naming it; no refresh key is no
// error.
func LoadRefreshDir(dir string) ([]*RefreshKey, error) {
	ls, err := loadRefreshDir(dir)
	if err != nil {
		return nil, err
	}
	ks := make([]*RefreshKey, len(ls))
	for i, l := range ls {
		ks[i] = l.key
	}
	return ks, nil
}

// RefreshDirStatus loads dir's refresh keys and returns their status at
// now (for `tokend keys list`), with each key's file.
func RefreshDirStatus(dir string, t Timing, now time.Time) ([]RefreshStatus, []string, error) {
	ls, err := loadRefreshDir(dir)
	if err != nil {
		return nil, nil, err
	}
	ks := make([]*RefreshKey, len(ls))
	paths := make([]string, len(ls))
	for i, l := range ls {
		ks[i], paths[i] = l.key, l.path
	}
	return RefreshSchedule(ks, t, now), paths, nil
}

// PruneRefresh deletes the files of dir's expired refresh keys and returns
// their paths. A key expires only when every session that started with it
// has, provided t is the refresh Timing the servers use.
func PruneRefresh(dir string, t Timing, now time.Time) ([]string, error) {
	sts, paths, err := RefreshDirStatus(dir, t, now)
	if err != nil {
		return nil, err
	}
	return removeFiles(paths, func(i int) bool { return sts[i].State == StateExpired })
}

// RotateRefresh adds a new refresh key to dir, stamped like Rotate stamps
// signing keys (the time it was made rounded up to the second, later than
// every other refresh key), and with prune deletes expired refresh key
// files. New sessions use it from t.PrePublish after its stamp (at once in
// a dir with no refresh key).
func RotateRefresh(dir string, t Timing, now func() time.Time, prune bool) (k *RefreshKey, path string, removed []string, err error) {
	k = GenerateRefreshKey()
	k.Created = stamp(now())
	existing, err := loadRefreshDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil, err
	}
	if n := len(existing); n > 0 && !k.Created.After(existing[n-1].key.Created) {
		k.Created = existing[n-1].key.Created.Add(time.Second)
	}
	path, err = WriteRefreshFile(dir, k)
	if err != nil {
		return nil, "", nil, err
	}
	if prune {
		removed, err = PruneRefresh(dir, t, now())
	}
	return k, path, removed, err
}

// stamp rounds the time a key was made up to the second of its file name,
// so that rounding never shortens a pre-publication delay.
func stamp(made time.Time) time.Time {
	c := made.UTC().Truncate(time.Second)
	if c.Before(made) {
		c = c.Add(time.Second)
	}
	return c
}
