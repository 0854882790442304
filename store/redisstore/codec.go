package redisstore

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// Record layouts (see recordsLua).
const (
	oldUserValues = 7  // a MessagePack user record: id name pw roles dis ca ua
	userHeader    = 26 // version, dis, ca ua nb (8 bytes each)
	sessionHeader = 49 // version, g ca la ea ra (8 bytes each), rq (8 bytes)
)

var errRecord = errors.New("malformed record")

// unpack decodes a sequence of MessagePack values as cmsgpack writes them:
// strings, integers, nil, booleans and floats. Strings stay strings
// (binary-safe), numbers become int64.
func unpack(b string) ([]any, error) {
	var out []any
	for len(b) > 0 {
		v, rest, err := unpackOne(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		b = rest
	}
	return out, nil
}

func unpackOne(b string) (any, string, error) {
	c := b[0]
	b = b[1:]
	// take returns the next n bytes as a string.
	take := func(n int) (any, string, error) {
		if n < 0 || n > len(b) {
			return nil, "", errRecord
		}
		return b[:n], b[n:], nil
	}
	// uint reads a big-endian unsigned integer of n bytes.
	uint := func(n int) (uint64, string, error) {
		if n > len(b) {
			return 0, "", errRecord
		}
		var v uint64
		for i := range n {
			v = v<<8 | uint64(b[i])
		}
		return v, b[n:], nil
	}
	// sized reads a string whose length takes n bytes.
	sized := func(n int) (any, string, error) {
		size, rest, err := uint(n)
		if err != nil || size > uint64(len(rest)) {
			return nil, "", errRecord
		}
		return rest[:size], rest[size:], nil
	}
	switch {
	case c <= 0x7f:
		return int64(c), b, nil
	case c >= 0xe0:
		return int64(int8(c)), b, nil
	case c >= 0xa0 && c <= 0xbf:
		return take(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, b, nil
	case 0xc2, 0xc3:
		return c == 0xc3, b, nil
	case 0xd9, 0xc4: // str8, bin8
		return sized(1)
	case 0xda, 0xc5: // str16, bin16
		return sized(2)
	case 0xdb, 0xc6: // str32, bin32
		return sized(4)
	case 0xcc, 0xcd, 0xce, 0xcf: // uint8/16/32/64
		v, rest, err := uint(1 << (c - 0xcc))
		if err != nil || v > math.MaxInt64 {
			return nil, "", errRecord
		}
		return int64(v), rest, nil
	case 0xd0, 0xd1, 0xd2, 0xd3: // int8/16/32/64
		n := 1 << (c - 0xd0)
		v, rest, err := uint(n)
		if err != nil {
			return nil, "", errRecord
		}
		shift := 64 - 8*n
		return int64(v<<shift) >> shift, rest, nil
	case 0xca:
		v, rest, err := uint(4)
		if err != nil {
			return nil, "", errRecord
		}
		return float64(math.Float32frombits(uint32(v))), rest, nil
	case 0xcb:
		v, rest, err := uint(8)
		if err != nil {
			return nil, "", errRecord
		}
		return math.Float64frombits(v), rest, nil
	}
	return nil, "", errRecord
}

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
	if len(v) < sessionHeader || v[0] != 1 {
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
	strs, err := lengthPrefixed(v[sessionHeader:], 5)
	if err != nil {
		return store.Session{}, err
	}
	s.ClientID, s.Scope, s.RevokeReason, s.UserAgent, s.IP = strs[0], strs[1], strs[2], strs[3], strs[4]
	return s, nil
}

// decodeUser decodes a user record (the layouts are in scripts.go).
func decodeUser(v string) (store.User, error) {
	if len(v) > 0 && v[0] == 2 {
		return decodeUserV2(v)
	}
	f, err := unpack(v)
	if err != nil || len(f) != oldUserValues {
		return store.User{}, errRecord
	}
	return store.User{
		ID:           str(f[0]),
		Username:     str(f[1]),
		PasswordHash: str(f[2]),
		Roles:        fields.Words(str(f[3])),
		Disabled:     num(f[4]) == 1,
		CreatedAt:    msTime(f[5]),
		UpdatedAt:    msTime(f[6]),
	}, nil
}

func decodeUserV2(v string) (store.User, error) {
	if len(v) < userHeader {
		return store.User{}, errRecord
	}
	at := func(i int) int64 { return int64(binary.BigEndian.Uint64([]byte(v[2+8*i : 10+8*i]))) }
	strs, err := lengthPrefixed(v[userHeader:], 6)
	if err != nil {
		return store.User{}, err
	}
	return store.User{
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
	}, nil
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
