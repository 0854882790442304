package redisstore

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// Record layouts (see scripts.go).
const (
	userVersion    = 3
	userHeader     = 34 // version, dis, ca ua nb ls (8 bytes each)
	userHeaderV2   = 26 // the same without ls
	sessionVersion = 3
	sessionHeader  = 34 // version, g (7 bytes), ca la ea (6 bytes each), rq (8 bytes)
	// maxMillis bounds the times a session record holds (6 bytes, signed):
	// about ±4,400 years around 1970.
	maxMillis = 1<<47 - 1
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

// encodeSession builds a session record (the layout is in scripts.go):
// the user agent cut to store.MaxUserAgent bytes and compressed, the IP
// and the DPoP thumbprint in binary where they are canonical.
// CreateSession stores one at generation 0; the scripts rewrite its header
// and end.
func encodeSession(x store.Session) (string, error) {
	times := []int64{fields.Millis(x.CreatedAt), fields.Millis(x.UpdatedAt), fields.Millis(x.ExpiresAt), fields.Millis(x.RevokedAt)}
	for _, t := range times {
		if t < -maxMillis || t > maxMillis {
			return "", errors.New("a session time outside the record's range")
		}
	}
	if x.Generation >= store.MaxGeneration {
		return "", errors.New("a generation outside the record's range")
	}
	var end string
	if !x.RevokedAt.IsZero() {
		b := []byte(x.RevokeReason + "123456")
		putInt(b[len(b)-6:], times[3])
		end = string(b)
	}
	strs := []struct {
		v    string
		wide bool // a 2-byte length
	}{{x.KeyID, false}, {encodeJKT(x.JKT), false}, {x.ClientID, false}, {x.Scope, true}, {end, false},
		{encodeIP(x.IP), false}, {encodeUA(store.TruncateUserAgent(x.UserAgent)), true}}
	b := make([]byte, sessionHeader, 96)
	b[0] = sessionVersion
	putInt(b[1:8], int64(x.Generation))
	putInt(b[8:14], times[0])
	putInt(b[14:20], times[1])
	putInt(b[20:26], times[2])
	copy(b[26:34], x.LastRequest[:])
	for _, f := range strs {
		max := 0xff
		if f.wide {
			max = 0xffff
		}
		if len(f.v) > max {
			return "", fmt.Errorf("a session field of %d bytes (at most %d)", len(f.v), max)
		}
		if f.wide {
			b = append(b, byte(len(f.v)>>8))
		}
		b = append(b, byte(len(f.v)))
		b = append(b, f.v...)
	}
	return string(b), nil
}

// putInt writes v big-endian into b (len(b) bytes, two's complement).
func putInt(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// getInt reads a big-endian two's complement integer of len(b) bytes.
func getInt(b string) int64 {
	var v uint64
	for i := range len(b) {
		v = v<<8 | uint64(b[i])
	}
	shift := 64 - 8*len(b)
	return int64(v<<shift) >> shift
}

// decodeSession decodes a session record (the layout is in scripts.go).
func decodeSession(userID, sessionID, v string) (store.Session, error) {
	if len(v) < sessionHeader || v[0] != sessionVersion {
		return store.Session{}, errRecord
	}
	s := store.Session{
		ID:         sessionID,
		UserID:     userID,
		Generation: uint64(getInt("\x00" + v[1:8])),
		CreatedAt:  fields.Time(getInt(v[8:14])),
		UpdatedAt:  fields.Time(getInt(v[14:20])),
		ExpiresAt:  fields.Time(getInt(v[20:26])),
	}
	copy(s.LastRequest[:], v[26:34])
	r := reader{b: v[sessionHeader:]}
	s.KeyID = r.str(1)
	jkt := r.str(1)
	s.ClientID = r.str(1)
	s.Scope = r.str(2)
	end := r.str(1)
	ip := r.str(1)
	ua := r.str(2)
	if r.err || len(r.b) != 0 || len(end) > 0 && len(end) < 6 {
		return store.Session{}, errRecord
	}
	if len(end) > 0 {
		s.RevokedAt, s.RevokeReason = fields.Time(getInt(end[len(end)-6:])), end[:len(end)-6]
	}
	var err error
	if s.JKT, err = decodeJKT(jkt); err != nil {
		return store.Session{}, err
	}
	if s.IP, err = decodeIP(ip); err != nil {
		return store.Session{}, err
	}
	if s.UserAgent, err = decodeUA(ua); err != nil {
		return store.Session{}, err
	}
	return s, nil
}

// reader reads length-prefixed strings; err is set once one does not
// fit.
type reader struct {
	b   string
	err bool
}

// str reads a string whose big-endian length takes n bytes.
func (r *reader) str(n int) string {
	if r.err || len(r.b) < n {
		r.err = true
		return ""
	}
	size := int(getInt("\x00" + r.b[:n]))
	if len(r.b) < n+size {
		r.err = true
		return ""
	}
	out := r.b[n : n+size]
	r.b = r.b[n+size:]
	return out
}

// Compact forms of fields that only Go reads or that the scripts only
// compare: the first byte says which form follows, so every encoding is
// one-to-one; "" stays "".
const (
	formRaw    = 0 // the string as given
	formBinary = 1 // an IP's 4 or 16 bytes, a thumbprint's 32, or the user agent compressed (uaDictionary)
)

// encodeIP stores a canonical IP address (one that parses and prints back
// the same) as its 4 or 16 bytes.
func encodeIP(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil && a.String() == ip && a.Zone() == "" {
		return string(append([]byte{formBinary}, a.AsSlice()...))
	}
	return compactRaw(ip)
}

func decodeIP(v string) (string, error) {
	if v == "" || v[0] == formRaw {
		return strings.TrimPrefix(v, "\x00"), nil
	}
	a, ok := netip.AddrFromSlice([]byte(v[1:]))
	if !ok || v[0] != formBinary {
		return "", errRecord
	}
	return a.String(), nil
}

// encodeJKT stores a canonical RFC 7638 SHA-256 thumbprint (unpadded
// base64url of 32 bytes) as its 32 bytes.
func encodeJKT(jkt string) string {
	if b, err := base64.RawURLEncoding.DecodeString(jkt); err == nil && len(b) == 32 && base64.RawURLEncoding.EncodeToString(b) == jkt {
		return string(append([]byte{formBinary}, b...))
	}
	return compactRaw(jkt)
}

func decodeJKT(v string) (string, error) {
	switch {
	case v == "" || v[0] == formRaw:
		return strings.TrimPrefix(v, "\x00"), nil
	case v[0] == formBinary && len(v) == 33:
		return base64.RawURLEncoding.EncodeToString([]byte(v[1:])), nil
	}
	return "", errRecord
}

// compactRaw is the raw form of a non-empty string.
func compactRaw(s string) string {
	if s == "" {
		return ""
	}
	return "\x00" + s
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
	r := reader{b: v[header:]}
	strs := make([]string, 6)
	for i := range strs {
		strs[i] = r.str(2)
	}
	if r.err || len(r.b) != 0 {
		return store.User{}, errRecord
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
