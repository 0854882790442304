package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often a DirSource re-reads its directory
// when DirOptions.ReloadInterval is zero.
const DefaultReloadInterval = 15 * time.Second

// DirOptions configure a DirSource.
type DirOptions struct {
	Timing Timing
	// ReloadInterval is how often Run re-reads the directory
	// [DefaultReloadInterval]. It must be part of Timing.PrePublish.
	ReloadInterval time.Duration
	// Logger receives key changes and reload failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RefreshTiming is the schedule of the directory's refresh keys (see
	// RefreshSchedule): PrePublish is at least ReloadInterval, RetireAfter
	// at least the refresh-token lifetime.
	RefreshTiming Timing
	// RequireRefreshKeys makes a load fail when the directory holds no
	// refresh key (what `tokend serve` wants); without it a directory of
	// signing keys alone is fine and RefreshKeys returns nil.
	RequireRefreshKeys bool
}

// DirSource is a rotating key source over a key directory shared by every
// replica (a volume or a Kubernetes secret): the keys are the directory's
// files, their states follow from their file names and the clock (see
// Schedule), and the current Set is swapped atomically when the directory
// changes or when a key changes state. Keys is safe for concurrent use and
// costs an atomic load and a clock read.
//
// The directory's refresh keys (*.refresh, see RefreshKey) are followed
// the same way, on their own schedule (DirOptions.RefreshTiming).
//
// It satisfies token.KeySource and token.RefreshKeySource.
type DirSource struct {
	dir         string
	timing      Timing
	rtiming     Timing
	needRefresh bool
	reload      time.Duration
	log         *slog.Logger
	now         func() time.Time

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex        // serialises Reload and rebuild; guards the fields below
	files  map[string]loaded // by file name; the parsed key and its file's identity
	rfiles map[string]loadedRefresh
	stamp  map[string]fileStamp // of both kinds of file
	keys   []*Key               // sorted oldest first
	rkeys  []*RefreshKey        // sorted oldest first
}

// snapshot is one immutable state of a DirSource.
type snapshot struct {
	set     *Set
	status  []Status
	rset    *RefreshSet // nil when the directory has no refresh key
	rstatus []RefreshStatus
	until   time.Time // when a state changes next; zero = no change ahead
}

// fileStamp tells whether a file changed since it was parsed.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// NewDirSource reads dir and returns a source of its keys. It fails if a
// file in dir is bad (see loadDir) or dir holds no key with a private key.
// Call Run to follow later changes to dir.
func NewDirSource(dir string, o DirOptions) (*DirSource, error) {
	if o.Timing.PrePublish < 0 || o.Timing.RetireAfter < 0 || o.RefreshTiming.PrePublish < 0 || o.RefreshTiming.RetireAfter < 0 {
		return nil, errors.New("keys: negative key timing")
	}
	s := &DirSource{
		dir: dir, timing: o.Timing, rtiming: o.RefreshTiming, needRefresh: o.RequireRefreshKeys,
		reload: o.ReloadInterval, log: o.Logger, now: o.Now,
		files: map[string]loaded{}, rfiles: map[string]loadedRefresh{}, stamp: map[string]fileStamp{},
	}
	if s.reload <= 0 {
		s.reload = DefaultReloadInterval
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Keys returns the current set: the active key signs; pending, active and
// retired keys are published.
func (s *DirSource) Keys() *Set { return s.current().set }

// RefreshKeys returns the current refresh keys: the active one is used for
// new sessions; pending, active and retired ones verify. Nil when the
// directory holds no refresh key (see DirOptions.RequireRefreshKeys).
func (s *DirSource) RefreshKeys() *RefreshSet { return s.current().rset }

// current returns the snapshot, rebuilt first if a state change is due.
func (s *DirSource) current() *snapshot {
	sn := s.snap.Load()
	if !sn.until.IsZero() && !s.now().Before(sn.until) {
		sn = s.rebuild()
	}
	return sn
}

// Status returns every key of the directory (expired ones included) with
// its state now, oldest first.
func (s *DirSource) Status() []Status {
	return slices.Clone(s.current().status)
}

// RefreshStatus is Status for the refresh keys.
func (s *DirSource) RefreshStatus() []RefreshStatus {
	return slices.Clone(s.current().rstatus)
}

// Run re-reads the directory every reload interval until ctx ends. A
// failed reload (an unreadable directory, a half-copied file) is logged and
// keeps the previous keys; the next tick tries again.
func (s *DirSource) Run(ctx context.Context) {
	t := time.NewTicker(s.reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Reload(); err != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "reloading signing keys failed; keeping the current keys",
					slog.String("dir", s.dir), slog.String("error", err.Error()))
			}
		}
	}
}

// Reload re-reads the directory now. Files whose size and modification
// time are unchanged are not parsed again. On error the current keys stay.
func (s *DirSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("keys: read key directory: %w", err)
	}
	files := make(map[string]loaded, len(entries))
	rfiles := make(map[string]loadedRefresh)
	stamps := make(map[string]fileStamp, len(entries))
	for _, e := range entries {
		name := e.Name()
		signing := strings.HasSuffix(name, ".pem") && !strings.HasPrefix(name, ".")
		if !signing && !isRefreshFile(name) {
			continue
		}
		path := filepath.Join(s.dir, name)
		info, err := os.Stat(path) // follows symlinks (Kubernetes secret volumes)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we read the listing
			}
			return fmt.Errorf("keys: %w", err)
		}
		st := fileStamp{size: info.Size(), modTime: info.ModTime()}
		unchanged := s.stamp[name] == st
		stamps[name] = st
		if signing {
			if old, ok := s.files[name]; ok && unchanged {
				files[name] = old
				continue
			}
			k, err := loadFile(path, name)
			if err != nil {
				return err
			}
			files[name] = loaded{k, path}
			continue
		}
		if old, ok := s.rfiles[name]; ok && unchanged {
			rfiles[name] = old
			continue
		}
		k, err := loadRefreshFile(path, name)
		if err != nil {
			return err
		}
		rfiles[name] = loadedRefresh{k, path}
	}
	rls := make([]loadedRefresh, 0, len(rfiles))
	for _, l := range rfiles {
		rls = append(rls, l)
	}
	sortLoadedRefresh(rls)
	rks := make([]*RefreshKey, len(rls))
	for i, l := range rls {
		rks[i] = l.key
	}
	if s.needRefresh && len(rks) == 0 {
		return fmt.Errorf("keys: no refresh key files (*%s) in %s (make one with `tokend keys rotate --only refresh`)", refreshSuffix, s.dir)
	}
	ls := make([]loaded, 0, len(files))
	for _, l := range files {
		ls = append(ls, l)
	}
	sortLoaded(ls)
	ks := make([]*Key, len(ls))
	for i, l := range ls {
		ks[i] = l.key
	}
	if !slices.ContainsFunc(ks, func(k *Key) bool { return k.Signer != nil }) {
		return fmt.Errorf("keys: no private key files (*.pem) in %s", s.dir)
	}
	changed := !slices.Equal(ks, s.keys) || !slices.Equal(rks, s.rkeys)
	s.files, s.rfiles, s.stamp, s.keys, s.rkeys = files, rfiles, stamps, ks, rks
	if changed || s.snap.Load() == nil {
		s.rebuildLocked()
	}
	return nil
}

// rebuild recomputes the snapshot when a state change is due.
func (s *DirSource) rebuild() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sn := s.snap.Load(); sn.until.IsZero() || s.now().Before(sn.until) {
		return sn // another caller got here first
	}
	return s.rebuildLocked()
}

func (s *DirSource) rebuildLocked() *snapshot {
	now := s.now()
	old := s.snap.Load()
	sts := Schedule(s.keys, s.timing, now)
	set, err := setOf(sts)
	if err != nil { // Reload checked there is a private key; cannot happen
		s.log.Error("building the key set failed; keeping the current keys", slog.String("error", err.Error()))
		return old
	}
	rsts := RefreshSchedule(s.rkeys, s.rtiming, now)
	until := nextChange(sts, now)
	if ru := refreshNextChange(rsts, now); !ru.IsZero() && (until.IsZero() || ru.Before(until)) {
		until = ru
	}
	sn := &snapshot{set: set, status: sts, rset: refreshSetOf(rsts), rstatus: rsts, until: until}
	s.snap.Store(sn)
	s.logChanges(old, sn)
	return sn
}

// logChanges logs keys that appeared, changed state or went away.
func (s *DirSource) logChanges(old, cur *snapshot) {
	var oldSigning, oldRefresh []keyState
	if old != nil {
		oldSigning, oldRefresh = signingStates(old.status), refreshStates(old.rstatus)
	}
	logKeyStates(s.log, oldSigning, signingStates(cur.status), "signing key", "signing with key")
	logKeyStates(s.log, oldRefresh, refreshStates(cur.rstatus), "refresh key", "new sessions use refresh key")
}

// keyState is one key's state in a snapshot, with the attributes logged
// when it changes.
type keyState struct {
	id    string
	state State
	attrs []slog.Attr
}

func signingStates(sts []Status) []keyState {
	ks := make([]keyState, len(sts))
	for i, st := range sts {
		attrs := []slog.Attr{slog.String("kid", st.Key.ID), slog.String("alg", st.Key.Alg), slog.String("state", st.State.String())}
		if !st.SignsFrom.IsZero() && st.State == StatePending {
			attrs = append(attrs, slog.Time("signs_from", st.SignsFrom))
		}
		if !st.DroppedAt.IsZero() && st.State == StateRetired {
			attrs = append(attrs, slog.Time("dropped_at", st.DroppedAt))
		}
		ks[i] = keyState{st.Key.ID, st.State, attrs}
	}
	return ks
}

func refreshStates(sts []RefreshStatus) []keyState {
	ks := make([]keyState, len(sts))
	for i, st := range sts {
		attrs := []slog.Attr{slog.String("kid", st.Key.ID), slog.String("state", st.State.String())}
		if st.State == StatePending {
			attrs = append(attrs, slog.Time("used_from", st.SignsFrom))
		}
		if st.State == StateRetired {
			attrs = append(attrs, slog.Time("dropped_at", st.DroppedAt))
		}
		ks[i] = keyState{st.Key.ID, st.State, attrs}
	}
	return ks
}

// logKeyStates logs each key of cur that is new or changed state since
// old ("<kind> state", or activeMsg when it became active), and each key of
// old that is gone ("<kind> file removed").
func logKeyStates(log *slog.Logger, old, cur []keyState, kind, activeMsg string) {
	prev := make(map[string]State, len(old))
	for _, k := range old {
		prev[k.id] = k.state
	}
	for _, k := range cur {
		was, seen := prev[k.id]
		delete(prev, k.id)
		if seen && was == k.state {
			continue
		}
		msg := kind + " state"
		if k.state == StateActive {
			msg = activeMsg
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, msg, k.attrs...)
	}
	for kid := range prev {
		log.LogAttrs(context.Background(), slog.LevelInfo, kind+" file removed", slog.String("kid", kid))
	}
}

// DirStatus loads dir and returns the status of its keys at now (for
// `tokend keys list`), with the path of each key's file.
func DirStatus(dir string, t Timing, now time.Time) ([]Status, []string, error) {
	ls, err := loadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	ks := make([]*Key, len(ls))
	paths := make([]string, len(ls))
	for i, l := range ls {
		ks[i], paths[i] = l.key, l.path
	}
	return Schedule(ks, t, now), paths, nil
}

// Prune deletes the files of dir's expired keys (see Schedule) and returns
// their paths. Keys are only expired once every token they signed has, so
// this never removes a key a verifier still needs, provided t is the
// Timing the servers use.
func Prune(dir string, t Timing, now time.Time) ([]string, error) {
	sts, paths, err := DirStatus(dir, t, now)
	if err != nil {
		return nil, err
	}
	return removeFiles(paths, func(i int) bool { return sts[i].State == StateExpired })
}

// removeFiles deletes paths[i] for every i that expired reports, and
// returns the paths it removed (a file already gone counts as removed).
// Prune and PruneRefresh share it.
func removeFiles(paths []string, expired func(i int) bool) ([]string, error) {
	var removed []string
	for i, path := range paths {
		if !expired(i) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("keys: prune: %w", err)
		}
		removed = append(removed, path)
	}
	return removed, nil
}

// sortLoaded sorts oldest first by Created, ties broken by path.
func sortLoaded(ls []loaded) {
	sort.Slice(ls, func(i, j int) bool {
		if c := ls[i].key.Created.Compare(ls[j].key.Created); c != 0 {
			return c < 0
		}
		return ls[i].path < ls[j].path
	})
}

// Rotate adds a new key for alg to dir and, with prune, deletes the files
// of expired keys. The new key is published as soon as the servers next
// read dir and signs from t.PrePublish after its timestamp: the time the
// key was made (read from now once it is generated), rounded up to the
// whole second of the file name so that rounding never shortens the delay,
// and later than every other key's.
// The key it replaces stops signing then. In an empty dir the key signs at
// once.
func Rotate(dir, alg string, t Timing, now func() time.Time, prune bool) (k *Key, path string, removed []string, err error) {
	k, err = Generate(alg)
	if err != nil {
		return nil, "", nil, err
	}
	k.Created = stamp(now())
	// Timestamps order the keys: keep them strictly increasing, so a key
	// made in the same second as the last one still comes after it.
	existing, err := loadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil, err
	}
	if n := len(existing); n > 0 && !k.Created.After(existing[n-1].key.Created) {
		k.Created = existing[n-1].key.Created.Add(time.Second)
	}
	path, err = WriteFile(dir, k)
	if err != nil {
		return nil, "", nil, err
	}
	if prune {
		removed, err = Prune(dir, t, now())
	}
	return k, path, removed, err
}
