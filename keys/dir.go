package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileTimeLayout is the UTC timestamp that starts every key file name, so
// that names sort by creation time.
const fileTimeLayout = "20060102T150405Z"

// FileName returns the name WriteFile gives k:
// "<UTC yyyymmddThhmmssZ of k.Created>-<kid>.pem".
func FileName(k *Key) string {
	return k.Created.UTC().Format(fileTimeLayout) + "-" + k.ID + ".pem"
}

// parseFileName splits a name made by FileName.
func parseFileName(name string) (created time.Time, kid string, ok bool) {
	base, ok := strings.CutSuffix(name, ".pem")
	if !ok || len(base) < len(fileTimeLayout)+2 || base[len(fileTimeLayout)] != '-' {
		return time.Time{}, "", false
	}
	created, err := time.Parse(fileTimeLayout, base[:len(fileTimeLayout)])
	if err != nil {
		return time.Time{}, "", false
	}
	return created, base[len(fileTimeLayout)+1:], true
}

// WriteFile stores k in dir as PKCS#8 PEM under FileName(k), with mode
// 0600, creating dir with mode 0700 if it does not exist (the mode of an
// existing dir is left alone). The file appears complete or not at all
// (written to a temporary file, synced, then linked into place), and an
// existing file of that name is never overwritten. It returns the file's
// path.
func WriteFile(dir string, k *Key) (path string, err error) {
	data, err := k.MarshalPEM()
	if err != nil {
		return "", err
	}
	return writeNew(dir, FileName(k), data)
}

// writeNew writes data to dir/name with mode 0600, creating dir with mode
// 0700 if it does not exist. The file appears complete or not at all
// (written to a temporary file, synced, then linked into place), and an
// existing file of that name is never overwritten.
func writeNew(dir, name string, data []byte) (path string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	path = filepath.Join(dir, name)
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("keys: %s already exists; refusing to overwrite", path)
	}
	// CreateTemp makes the file with mode 0600. Its name starts with a dot
	// and ends in neither .pem nor .refresh, so no loader reads it.
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

// loaded is a key with the file it came from.
type loaded struct {
	key  *Key
	path string
}

// loadDir parses every *.pem file in dir (names starting with "." are
// skipped) and returns the keys sorted oldest to newest by the timestamp in
// their file names (ties broken by name), which also sets each Key.Created.
// Every file must be named as FileName names it, and the kid in the name
// must be the key's thumbprint. Any bad file fails the whole load with an
// error naming it. An empty dir gives no keys and no error.
func loadDir(dir string) ([]loaded, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: read key directory: %w", err)
	}
	var ls []loaded
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".pem") || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		k, err := loadFile(path, name)
		if err != nil {
			return nil, err
		}
		ls = append(ls, loaded{k, path})
	}
	sortLoaded(ls)
	return ls, nil
}

func loadFile(path, name string) (*Key, error) {
	created, kid, ok := parseFileName(name)
	if !ok {
		return nil, fmt.Errorf("keys: %s: file name must be <yyyymmddThhmmssZ>-<kid>.pem (as written by WriteFile)", path)
	}
	data, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePEM(data, created)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	if k.ID != kid {
		return nil, fmt.Errorf("keys: %s: file name says kid %q but the key's thumbprint is %q", path, kid, k.ID)
	}
	return k, nil
}

// readRegular reads a key file, which must be a regular file (symlinks
// are followed, as in Kubernetes secret volumes).
func readRegular(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: %s: not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return data, nil
}
