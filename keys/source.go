package keys

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often a DirSource re-reads its directory
// when DirOptions.Lifetimes.Reload is zero.
const DefaultReloadInterval = 15 * time.Second

// DirOptions configure a DirSource.
type DirOptions struct {
	// Lifetimes are what the schedule of each kind follows from (see
	// Kind.Timing); Lifetimes.Reload is also how often Run re-reads the
	// directory [DefaultReloadInterval].
	Lifetimes Lifetimes
	// RequireRefreshKeys makes a load fail when the directory holds no
	// refresh key (what `tokend serve` wants); without it a directory of
	// signing keys alone is fine and RefreshKeys returns nil. A signing key
	// that can sign is always required.
	RequireRefreshKeys bool
	// Logger receives key changes and reload failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DirSource is a rotating key source over a key directory shared by every
// replica (a volume or a Kubernetes secret): the keys are the directory's
// files, their states follow from their file names and the clock (see
// Schedule), each kind on its own schedule (Kind.Timing), and the rings
// in use are swapped atomically when the directory changes or when a key
// changes state. Keys and RefreshKeys are safe for concurrent use and cost
// an atomic load and a clock read.
//
// It satisfies token.KeySource and token.RefreshKeySource.
type DirSource struct {
	dir    string
	reload time.Duration
	log    *slog.Logger
	now    func() time.Time

	snap atomic.Pointer[snapshot]

	mu      sync.Mutex // serialises Reload and rebuild; guards the followers
	signing follower[*Key, *Set]
	refresh follower[*RefreshKey, *RefreshSet]
}

// snapshot is one immutable state of a DirSource.
type snapshot struct {
	signing view[*Key, *Set]
	refresh view[*RefreshKey, *RefreshSet] // set nil when the directory has no refresh key
	until   time.Time                      // when a state changes next; zero = no change ahead
}

// view is one kind's part of a snapshot: every key of the directory
// (expired ones included) with its state, oldest first, and the ring in
// use.
type view[K KeyType, S any] struct {
	status []Status[K]
	set    S
}

// follower follows the keys of one kind in a DirSource's directory.
type follower[K KeyType, S any] struct {
	kind     Kind[K, S]
	timing   Timing
	required bool      // a load that finds no key that can sign fails
	files    []file[K] // oldest first
}

// NewDirSource reads dir and returns a source of its keys. It fails if a
// key file in dir is bad, or dir holds no signing key that can sign (or no
// refresh key, with o.RequireRefreshKeys): a *MissingKeysError, also when
// dir does not exist. Call Run to follow later changes to dir.
func NewDirSource(dir string, o DirOptions) (*DirSource, error) {
	l := o.Lifetimes
	if l.Reload < 0 || l.JWKSMaxAge < 0 || l.Access < 0 || l.Refresh < 0 || l.Leeway < 0 {
		return nil, errors.New("keys: negative key lifetime")
	}
	s := &DirSource{
		dir: dir, reload: l.Reload, log: o.Logger, now: o.Now,
		signing: follower[*Key, *Set]{kind: Signing, timing: Signing.Timing(l), required: true},
		refresh: follower[*RefreshKey, *RefreshSet]{kind: Refresh, timing: Refresh.Timing(l), required: o.RequireRefreshKeys},
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

// Keys returns the signing keys in use: the active key signs; pending,
// active, retired and public-only keys are published.
func (s *DirSource) Keys() *Set { return s.current().signing.set }

// RefreshKeys returns the refresh keys in use: the active one is used for
// new sessions; pending, active and retired ones verify. Nil when the
// directory holds no refresh key (see DirOptions.RequireRefreshKeys).
func (s *DirSource) RefreshKeys() *RefreshSet { return s.current().refresh.set }

// current returns the snapshot, rebuilt first if a state change is due.
func (s *DirSource) current() *snapshot {
	sn := s.snap.Load()
	if !sn.until.IsZero() && !s.now().Before(sn.until) {
		sn = s.rebuild()
	}
	return sn
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
				s.log.LogAttrs(ctx, slog.LevelError, "reloading the key directory failed; keeping the current keys",
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
	entries, err := readDir(s.dir)
	noDir := errors.Is(err, fs.ErrNotExist)
	if err != nil && !noDir {
		return err
	}
	sfiles, err := s.signing.kind.scan(s.dir, entries, s.signing.files)
	if err != nil {
		return err
	}
	rfiles, err := s.refresh.kind.scan(s.dir, entries, s.refresh.files)
	if err != nil {
		return err
	}
	if miss := s.refresh.check(s.signing.check(nil, s.dir, noDir, sfiles), s.dir, noDir, rfiles); miss != nil {
		return miss
	}
	changed := s.signing.swap(sfiles)
	changed = s.refresh.swap(rfiles) || changed
	if changed || s.snap.Load() == nil {
		s.rebuildLocked()
	}
	return nil
}

// check adds f's kind to miss (a new error when miss is nil) if f
// requires a key that can sign and files have none.
func (f *follower[K, S]) check(miss *MissingKeysError, dir string, noDir bool, files []file[K]) *MissingKeysError {
	if f.required && !slices.ContainsFunc(files, func(f file[K]) bool { return f.key.canSign() }) {
		return missing(miss, dir, noDir, f.kind)
	}
	return miss
}

// swap makes files f's, and reports whether its keys changed.
func (f *follower[K, S]) swap(files []file[K]) bool {
	changed := !slices.EqualFunc(files, f.files, func(a, b file[K]) bool { return a.key == b.key })
	f.files = files
	return changed
}

// view computes f's keys' states at now and the ring they make.
func (f *follower[K, S]) view(now time.Time) (view[K, S], error) {
	sts := Schedule(keysOf(f.files), f.timing, now)
	set, err := f.kind.setOf(sts)
	return view[K, S]{sts, set}, err
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
	sv, serr := s.signing.view(now)
	rv, rerr := s.refresh.view(now)
	if err := errors.Join(serr, rerr); err != nil {
		// Reload checked that there is a key to sign with, and the keys
		// it loads are complete: cannot happen.
		s.log.Error("building the key set failed; keeping the current keys", slog.String("error", err.Error()))
		return old
	}
	sn := &snapshot{signing: sv, refresh: rv, until: earliest(nextChange(sv.status, now), nextChange(rv.status, now), now)}
	s.snap.Store(sn)
	var was snapshot
	if old != nil {
		was = *old
	}
	s.signing.logChanges(s.log, was.signing.status, sv.status)
	s.refresh.logChanges(s.log, was.refresh.status, rv.status)
	return sn
}

// logChanges logs each key of cur that is new or changed state since old
// ("<kind> state", or the kind's message when it became active), and each
// key of old that is gone ("<kind> file removed").
func (f *follower[K, S]) logChanges(log *slog.Logger, old, cur []Status[K]) {
	prev := make(map[string]State, len(old))
	for _, st := range old {
		prev[st.Key.stamp().ID] = st.State
	}
	for _, st := range cur {
		kid := st.Key.stamp().ID
		was, seen := prev[kid]
		delete(prev, kid)
		if seen && was == st.State {
			continue
		}
		attrs := append([]slog.Attr{slog.String("kid", kid)}, f.kind.logAttrs(st.Key)...)
		attrs = append(attrs, slog.String("state", st.State.String()))
		switch st.State {
		case StatePending:
			attrs = append(attrs, slog.Time(f.kind.logFrom, st.SignsFrom))
		case StateRetired:
			attrs = append(attrs, slog.Time("dropped_at", st.DroppedAt))
		}
		msg := f.kind.logName + " state"
		if st.State == StateActive {
			msg = f.kind.logActive
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	}
	for kid := range prev {
		log.LogAttrs(context.Background(), slog.LevelInfo, f.kind.logName+" file removed", slog.String("kid", kid))
	}
}
