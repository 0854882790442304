package redisstore

import (
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// Record layouts (see recordsLua).
const (
	userVersion    = 3
	userHeader     = 34 // version, dis, ca ua nb ls (8 bytes each)
	userHeaderV2   = 26 // the same without ls
	sessionVersion = 2
	sessionHeader  = 49 // version, g ca la ea ra (8 bytes each), rq (8 bytes)
)

var (
	errRecord  = errors.New("malformed record")
	errOldUser = errors.New("user record of a layout before version 2 (MessagePack), no longer read: see docs/operations.md, \"Upgrades\"")
)

// str reads a string-valued reply or record element; numbers are
// formatted.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}

// num reads an integer-valued reply or record element.
func num(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

// msTime decodes a reply or record element of unix milliseconds.
func msTime(v any) time.Time { return fields.Time(num(v)) }

// decodeSession decodes a session record (the layout is in scripts.go).
func decodeSession(userID, sessionID, v string) (store.Session, error) {
	if len(v) < sessionHeader || v[0] != sessionVersion {
		return store.Session{}, errRecord
	}
	at := func(i int) int64 { return int64(binary.BigEndian.Uint64([]byte(v[1+8*i : 9+8*i]))) }
	s := store.Session{
		ID:         sessionID,
		UserID:     userID,
		Generation: uint64(at(0)),
		CreatedAt:  fields.Time(at(1)),
		UpdatedAt:  fields.Time(at(2)),
		ExpiresAt:  fields.Time(at(3)),
		RevokedAt:  fields.Time(at(4)),
	}
	copy(s.LastRequest[:], v[41:49])
	strs, err := lengthPrefixed(v[sessionHeader:], 7)
	if err != nil {
		return store.Session{}, err
	}
	s.KeyID, s.JKT, s.ClientID, s.Scope, s.RevokeReason, s.UserAgent, s.IP = strs[0], strs[1], strs[2], strs[3], strs[4], strs[5], strs[6]
	return s, nil
}

// decodeUser decodes a user record (the layouts are in scripts.go).
func decodeUser(v string) (store.User, error) {
	header := userHeader
	switch {
	case len(v) > 0 && v[0] == 2:
		header = userHeaderV2
	case len(v) == 0 || v[0] != userVersion:
		return store.User{}, errOldUser
	}
	if len(v) < header {
		return store.User{}, errRecord
	}
	at := func(i int) int64 { return int64(binary.BigEndian.Uint64([]byte(v[2+8*i : 10+8*i]))) }
	strs, err := lengthPrefixed(v[header:], 6)
	if err != nil {
		return store.User{}, err
	}
	u := store.User{
		ID:                strs[3],
		Username:          strs[4],
		PasswordHash:      strs[5],
		Roles:             fields.Words(strs[0]),
		Disabled:          v[1] == 1,
		CreatedAt:         fields.Time(at(0)),
		UpdatedAt:         fields.Time(at(1)),
		SessionsEnded:     fields.Time(at(2)),
		SessionsExempt:    strs[1],
		SessionsEndReason: strs[2],
	}
	if header == userHeader {
		u.LastSignIn = fields.Time(at(3))
	}
	return u, nil
}

// lengthPrefixed reads exactly n length-prefixed strings that fill b.
func lengthPrefixed(b string, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		if len(b) < 2 {
			return nil, errRecord
		}
		size := int(b[0])<<8 | int(b[1])
		if len(b) < 2+size {
			return nil, errRecord
		}
		out[i], b = b[2:2+size], b[2+size:]
	}
	if len(b) != 0 {
		return nil, errRecord
	}
	return out, nil
}
