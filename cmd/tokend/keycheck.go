package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/keys"
)

// ephemeralKeys is the finding on a configuration without JWT_KEYS_DIR,
// with what serve logs about the keys it makes instead.
func ephemeralKeys(attrs ...slog.Attr) finding {
	return newWarn("keys",
		"JWT_KEYS_DIR is not set: access tokens are signed with an ephemeral key and refresh tokens derived from an ephemeral refresh key; every token becomes invalid and every session ends on restart, and replicas cannot verify each other's tokens or refresh each other's sessions (development only)",
		"set JWT_KEYS_DIR to a directory shared by every replica and made with `tokend keys generate` (docs/operations.md, \"Signing keys and rotation\")",
		attrs...)
}

// openKeyDir reads JWT_KEYS_DIR as serve uses it: both kinds of key are
// required, every key file must load (keys.NewDirSource). Its error is
// the keys package's; keysFix says what fixes a missing kind.
func openKeyDir(cfg config.Config, log *slog.Logger) (*keys.DirSource, error) {
	return keys.NewDirSource(cfg.KeysDir, keys.DirOptions{Lifetimes: keyLifetimes(cfg), RequireRefreshKeys: true, Logger: log})
}

// keyFindings judges a key directory that loaded: the active signing
// key's algorithm against JWT_SIGNING_ALG, and the key files' modes
// (keyFileFindings).
func keyFindings(cfg config.Config, ds *keys.DirSource) []finding {
	var out []finding
	if k := ds.Keys().Current(); k.Alg != cfg.SigningAlg {
		out = append(out, newWarn("keys.signing",
			fmt.Sprintf("the active signing key %s is %s, not JWT_SIGNING_ALG %s: the keys in JWT_KEYS_DIR decide (JWT_SIGNING_ALG is the algorithm of new keys)", k.ID, k.Alg, cfg.SigningAlg),
			fmt.Sprintf("set JWT_SIGNING_ALG=%s, or `tokend keys rotate --only signing --alg %s` to move to %s", k.Alg, cfg.SigningAlg, cfg.SigningAlg),
			slog.String("kid", k.ID), slog.String("alg", k.Alg), slog.String("JWT_SIGNING_ALG", cfg.SigningAlg)))
	}
	return append(out, keyFileFindings(cfg.KeysDir)...)
}

// keyFileFindings judges who else may use dir's key files: a secret (a
// private signing key, a refresh key) that others than its owner and
// group may read, or a key file they may write (a key of theirs would be
// trusted), is a FAIL; the same for the group a WARN — fine if the group
// is tokend's alone. One finding per file at fault, or one OK.
func keyFileFindings(dir string) []finding {
	const check = "keys.permissions"
	var files []keys.File
	for _, list := range []func(string) ([]keys.File, error){keys.Signing.Files, keys.Refresh.Files} {
		fs, err := list(dir)
		if err != nil {
			return []finding{newFail(check, "could not read the key files: "+err.Error(), "")}
		}
		files = append(files, fs...)
	}
	var out []finding
	for _, f := range files {
		others, group := fileAccess(f.Mode, f.Secret, 0o007), fileAccess(f.Mode, f.Secret, 0o070)
		fix := fmt.Sprintf("chmod 600 %s (in a Kubernetes secret volume: defaultMode 0400)", f.Path)
		switch {
		case others != "":
			out = append(out, newFail(check, fmt.Sprintf("%s (mode %04o) is %s by every user of the host", f.Path, f.Mode, others), fix))
		case group != "":
			out = append(out, newWarn(check, fmt.Sprintf("%s (mode %04o) is %s by its group", f.Path, f.Mode, group), fix+", unless the group is tokend's alone"))
		}
	}
	if len(out) == 0 {
		out = append(out, newOK(check, fmt.Sprintf("%s: none writable by others than its owner, no secret readable by them", count(len(files), "key file"))))
	}
	return out
}

// fileAccess says what the permission bits of mode under mask (0o070
// group, 0o007 others) allow that they must not: writing any key file,
// reading a secret one; "" when nothing.
func fileAccess(mode fs.FileMode, secret bool, mask fs.FileMode) string {
	var what []string
	if secret && mode&mask&0o444 != 0 {
		what = append(what, "readable")
	}
	if mode&mask&0o222 != 0 {
		what = append(what, "writable")
	}
	return strings.Join(what, " and ")
}

// missingKinds reports whether err says only that the directory lacks a
// kind of key (or does not exist): what JWT_KEYS_GENERATE makes good.
func missingKinds(err error) bool {
	var miss *keys.MissingKeysError
	return errors.As(err, &miss)
}
