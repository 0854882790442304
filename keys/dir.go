package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// fileTimeLayout is the UTC timestamp that starts every key file name, so
// that names sort by creation time.
const fileTimeLayout = "20060102T150405Z"

// fileName returns the name of k's file:
// "<UTC yyyymmddThhmmssZ of k.Created>-<kid><suffix>".
func (kd Kind[K, S]) fileName(k K) string {
	st := k.stamp()
	return st.Created.UTC().Format(fileTimeLayout) + "-" + st.ID + kd.suffix
}

// isFile reports whether name is a key file of the kind. Names starting
// with "." (temporaries, editors' backups) are not.
func (kd Kind[K, S]) isFile(name string) bool {
	return strings.HasSuffix(name, kd.suffix) && !strings.HasPrefix(name, ".")
}

// parseFileName splits a name made by fileName.
func (kd Kind[K, S]) parseFileName(name string) (created time.Time, kid string, ok bool) {
	base, ok := strings.CutSuffix(name, kd.suffix)
	if !ok || len(base) != len(fileTimeLayout)+1+kd.kidLen || base[len(fileTimeLayout)] != '-' {
		return time.Time{}, "", false
	}
	created, err := time.Parse(fileTimeLayout, base[:len(fileTimeLayout)])
	if err != nil {
		return time.Time{}, "", false
	}
	return created, base[len(fileTimeLayout)+1:], true
}

// WriteFile stores k in dir under its file name, with mode 0600, creating
// dir with mode 0700 if it does not exist (the mode of an existing dir is
// left alone). The file appears complete or not at all (written to a
// temporary file, synced, then linked into place), and an existing file of
// that name is never overwritten. It returns the file's path.
func (kd Kind[K, S]) WriteFile(dir string, k K) (path string, err error) {
	data, err := kd.marshal(k)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	path = filepath.Join(dir, kd.fileName(k))
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("keys: %s already exists; refusing to overwrite", path)
	}
	// CreateTemp makes the file with mode 0600. Its name starts with a dot,
	// so no loader reads it.
	tmp, err := os.CreateTemp(dir, ".key-*.tmp")
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("keys: write %s: %w", tmp.Name(), err)
	}
	// Link, unlike Rename, fails if the target exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("keys: %s already exists; refusing to overwrite", path)
		}
		return "", fmt.Errorf("keys: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // persist the new directory entry; not supported everywhere
		_ = d.Close()
	}
	return path, nil
}

// file is a key with the file it came from.
type file[K any] struct {
	key     K
	path    string
	version fileVersion
}

// fileVersion tells whether a file changed since it was parsed.
type fileVersion struct {
	size    int64
	modTime time.Time
}

// load parses every key file of the kind in dir and returns the keys
// sorted oldest to newest (see sortFiles), each Created set from its file
// name. No key is no error; a dir that does not exist is a
// *MissingKeysError.
func (kd Kind[K, S]) load(dir string) ([]file[K], error) {
	entries, err := readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missing(nil, dir, true, kd)
	}
	if err != nil {
		return nil, err
	}
	return kd.scan(dir, entries, nil)
}

func readDir(dir string) ([]os.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: read key directory: %w", err)
	}
	return entries, nil
}

// scan parses the key files of the kind among the entries of dir and
// returns them oldest first (see sortFiles). A file that prev holds with
// the same size and modification time is not parsed again. Every file must
// be named as fileName names it, and the kid in the name must be the
// key's; any bad file fails the whole scan with an error naming it. Files
// removed while the listing is read are skipped.
func (kd Kind[K, S]) scan(dir string, entries []os.DirEntry, prev []file[K]) ([]file[K], error) {
	byPath := make(map[string]file[K], len(prev))
	for _, f := range prev {
		byPath[f.path] = f
	}
	var files []file[K]
	for _, e := range entries {
		if !kd.isFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		// A key file must be a regular file; symlinks are followed, as in
		// Kubernetes secret volumes.
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("keys: %s: not a regular file", path)
		}
		v := fileVersion{size: info.Size(), modTime: info.ModTime()}
		if old, ok := byPath[path]; ok && old.version == v {
			files = append(files, old)
			continue
		}
		k, err := kd.loadFile(path, e.Name())
		if err != nil {
			return nil, err
		}
		files = append(files, file[K]{k, path, v})
	}
	sortFiles(files)
	return files, nil
}

// loadFile parses one key file of the kind.
func (kd Kind[K, S]) loadFile(path, name string) (K, error) {
	var zero K
	created, kid, ok := kd.parseFileName(name)
	if !ok {
		return zero, fmt.Errorf("keys: %s: a %s key file's name must be <yyyymmddThhmmssZ>-<kid of %d characters>%s (as tokend keys writes it)",
			path, kd.name, kd.kidLen, kd.suffix)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("keys: %w", err)
	}
	k, err := kd.parse(data, created)
	if err != nil {
		return zero, fmt.Errorf("%w (in %s)", err, path)
	}
	if k.stamp().ID != kid {
		return zero, fmt.Errorf("keys: %s: file name says kid %q but the key's kid is %q", path, kid, k.stamp().ID)
	}
	return k, nil
}

// sortFiles sorts oldest first by Created, ties broken by path.
func sortFiles[K KeyType](files []file[K]) {
	slices.SortFunc(files, func(a, b file[K]) int {
		if c := a.key.stamp().Created.Compare(b.key.stamp().Created); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
}

// Status loads dir's keys of the kind and returns their status at now
// under t (see Schedule), oldest first.
func (kd Kind[K, S]) Status(dir string, t Timing, now time.Time) ([]Status[K], error) {
	files, err := kd.load(dir)
	if err != nil {
		return nil, err
	}
	return Schedule(keysOf(files), t, now), nil
}

func keysOf[K any](files []file[K]) []K {
	ks := make([]K, len(files))
	for i, f := range files {
		ks[i] = f.key
	}
	return ks
}

// File is a key file of a directory.
type File struct {
	Path string
	// Mode is the file's permission bits (a symlink's target's, as in a
	// Kubernetes secret volume).
	Mode fs.FileMode
	// Secret reports whether the file holds a secret: a refresh key, or a
	// signing key with its private part (not a public-only key).
	Secret bool
}

// Files lists dir's key files of the kind, oldest first, after loading
// them as a DirSource does (a bad file is an error naming it).
func (kd Kind[K, S]) Files(dir string) ([]File, error) {
	files, err := kd.load(dir)
	if err != nil {
		return nil, err
	}
	out := make([]File, 0, len(files))
	for _, f := range files {
		info, err := os.Stat(f.path)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		out = append(out, File{Path: f.path, Mode: info.Mode().Perm(), Secret: f.key.canSign()})
	}
	return out, nil
}

// prune deletes the files of dir's expired keys of the kind and returns
// their paths (a file already gone counts as removed). A key expires only
// once nothing needs it any more — every token a signing key signed, every
// session that started with a refresh key has expired — provided t is the
// Timing the servers use (Kind.Timing of their Lifetimes).
func (kd Kind[K, S]) prune(dir string, t Timing, now time.Time) ([]string, error) {
	files, err := kd.load(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for i, st := range Schedule(keysOf(files), t, now) {
		if st.State != StateExpired {
			continue
		}
		if err := os.Remove(files[i].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("keys: prune: %w", err)
		}
		removed = append(removed, files[i].path)
	}
	return removed, nil
}

// Add writes k into dir as the kind's newest key (creating dir if need
// be) and, with prune, deletes the files of expired keys. It sets
// k.Created to the time read from now — once k is made, rounded up to the
// whole second of the file name so that rounding never shortens the
// delay, and later than every other key's (two keys made in one second
// keep their order). So k is used from t.PrePublish after that time (at
// once when dir has no other key of the kind that can sign), and the key
// it replaces stops being used then.
func (kd Kind[K, S]) Add(dir string, k K, t Timing, now func() time.Time, prune bool) (path string, removed []string, err error) {
	st := k.stamp()
	st.Created = stampTime(now())
	existing, err := kd.load(dir)
	var none *MissingKeysError
	if err != nil && !errors.As(err, &none) {
		return "", nil, err
	}
	if n := len(existing); n > 0 && !st.Created.After(existing[n-1].key.stamp().Created) {
		st.Created = existing[n-1].key.stamp().Created.Add(time.Second)
	}
	if path, err = kd.WriteFile(dir, k); err != nil {
		return "", nil, err
	}
	if prune {
		removed, err = kd.prune(dir, t, now())
	}
	return path, removed, err
}

// stampTime rounds the time a key was made up to the second of its file
// name, so that rounding never shortens a pre-publication delay.
func stampTime(made time.Time) time.Time {
	c := made.UTC().Truncate(time.Second)
	if c.Before(made) {
		c = c.Add(time.Second)
	}
	return c
}
