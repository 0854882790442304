// Package jose holds what the verify module's two token parsers share —
// the access-token parser of package verify and the DPoP proof parser of
// package dpop: exact JSON member decoding, strict base64url, the
// signature algorithms and public JWKs. Each rule is written here once.
//
// JSON is decoded exactly: member names match case-sensitively (JSON names
// are case-sensitive: "ISS" is not iss, RFC 7515 §4 and RFC 7519 §4), a
// repeated member counts once with its last value (RFC 7515 §4, RFC 7519
// §4, and what encoding/json does), and every member read has exactly one
// JSON type — a NumericDate is a JSON number, never a string (RFC 7519 §2).
package jose

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// ObjectReader walks the members of one JSON object. The document is
// validated as a whole first (encoding/json's scanner), so the walk only
// has to find where names and values end.
type ObjectReader struct {
	b []byte
	i int
	// Name and Value are the current member: Name unquoted and unescaped,
	// Value the member's JSON text.
	Name, Value []byte
	// Err is set when Next stopped on an error.
	Err error
}

var errNotObject = errors.New("not a JSON object")

// NewObjectReader validates the JSON document b and returns a reader of
// its members; b must be an object.
func NewObjectReader(b []byte) (*ObjectReader, error) {
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	r := &ObjectReader{b: b}
	r.skipSpace()
	if r.i >= len(b) || b[r.i] != '{' {
		return nil, errNotObject
	}
	r.i++
	return r, nil
}

// Next moves to the next member and reports whether there is one.
func (r *ObjectReader) Next() bool {
	r.skipSpace()
	if r.i < len(r.b) && r.b[r.i] == ',' {
		r.i++
		r.skipSpace()
	}
	if r.i >= len(r.b) || r.b[r.i] == '}' {
		return false
	}
	n := stringEnd(r.b[r.i:])
	r.Name = r.b[r.i+1 : r.i+n-1]
	if bytes.IndexByte(r.Name, '\\') >= 0 {
		var s string
		if r.Err = json.Unmarshal(r.b[r.i:r.i+n], &s); r.Err != nil {
			return false
		}
		r.Name = []byte(s)
	}
	r.i += n
	r.skipSpace()
	r.i++ // ':'
	r.skipSpace()
	n = valueEnd(r.b[r.i:])
	r.Value = r.b[r.i : r.i+n]
	r.i += n
	return true
}

// Object returns a reader of the current member's value, which must be an
// object (it was validated with the whole document).
func (r *ObjectReader) Object() (*ObjectReader, error) {
	if len(r.Value) == 0 || r.Value[0] != '{' {
		return nil, errNotObject
	}
	return &ObjectReader{b: r.Value, i: 1}, nil
}

func (r *ObjectReader) skipSpace() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// stringEnd returns the length of the JSON string at the start of b.
func stringEnd(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the length of the (valid) JSON value at the start of b.
func valueEnd(b []byte) int {
	switch b[0] {
	case '"':
		return stringEnd(b)
	case '{', '[':
		depth := 0
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '"':
				i += stringEnd(b[i:]) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // a number, true, false or null
		for i, c := range b {
			switch c {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}

var errNotString = errors.New("not a string")

// String decodes a JSON string into dst; null sets dst empty (as if the
// member were absent). Any other type is an error.
func String(v []byte, dst *string) error {
	switch {
	case IsNull(v):
		*dst = ""
		return nil
	case v[0] != '"':
		return errNotString
	}
	if s, ok := plainString(v); ok {
		*dst = s
		return nil
	}
	return json.Unmarshal(v, dst)
}

// Strings decodes a JSON array of strings; null gives nil.
func Strings(v []byte) ([]string, error) {
	if IsNull(v) {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, errors.New("not an array of strings")
	}
	if ss, ok := plainStrings(v); ok {
		return ss, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(v, &raws); err != nil {
		return nil, err
	}
	ss := make([]string, len(raws))
	for i, raw := range raws {
		if len(raw) == 0 || raw[0] != '"' {
			return nil, errors.New("not an array of strings")
		}
		if err := json.Unmarshal(raw, &ss[i]); err != nil {
			return nil, err
		}
	}
	return ss, nil
}

// Audience decodes aud: a string or an array of strings (RFC 7519
// §4.1.3); null gives nil.
func Audience(v []byte) ([]string, error) {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := String(v, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	ss, err := Strings(v)
	if err != nil {
		return nil, errors.New("neither a string nor an array of strings")
	}
	return ss, nil
}

func IsNull(v []byte) bool { return string(v) == "null" }

// plainString decodes a JSON string as tokend writes them — no escapes,
// no control or non-ASCII bytes — without going through encoding/json. ok
// is false for anything else.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x7f {
			return "", false
		}
	}
	return string(v[1 : len(v)-1]), true
}

// plainStrings decodes a JSON array of plain strings (see plainString)
// written without whitespace. ok is false for anything else.
func plainStrings(v []byte) (ss []string, ok bool) {
	if len(v) < 2 || v[0] != '[' || v[len(v)-1] != ']' {
		return nil, false
	}
	rest := v[1 : len(v)-1]
	if len(rest) == 0 {
		return []string{}, true
	}
	for {
		if len(rest) == 0 || rest[0] != '"' {
			return nil, false
		}
		n := stringEnd(rest)
		s, ok := plainString(rest[:n])
		if !ok {
			return nil, false
		}
		ss = append(ss, s)
		rest = rest[n:]
		if len(rest) == 0 {
			return ss, true
		}
		if rest[0] != ',' {
			return nil, false
		}
		rest = rest[1:]
	}
}

// maxNumericDate bounds the NumericDates accepted, in seconds either side
// of the epoch (about 31.7 million years): far beyond any real token, and
// well inside what time.Time and float64 represent exactly.
const maxNumericDate = 1e15

// NumericDate is a NumericDate claim (RFC 7519 §2): a JSON number of
// seconds since the epoch, possibly fractional.
type NumericDate struct {
	T   time.Time
	Set bool // the member was present
}

// Decode decodes a NumericDate member.
func (d *NumericDate) Decode(v []byte) error {
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		// A string, null, an object…: RFC 7519 §2 says a JSON number.
		return errors.New("not a number")
	}
	var f float64
	if n, ok := smallInt(v); ok {
		f = float64(n)
	} else {
		var err error
		if f, err = strconv.ParseFloat(string(v), 64); err != nil {
			return errors.New("not a number")
		}
	}
	if f > maxNumericDate || f < -maxNumericDate {
		return errors.New("out of range")
	}
	sec := int64(f)
	d.T = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	d.Set = true
	return nil
}

// smallInt parses a JSON number made of at most 15 digits (what tokend
// writes) without strconv.
func smallInt(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// IsType reports whether the typ header names the media type
// application/<want>: "application/" may be omitted (RFC 7515 §4.1.9), and
// media types compare case-insensitively (ASCII only: RFC 6838 §4.2 names
// are ASCII).
func IsType(typ, want string) bool {
	const prefix = "application/"
	if len(typ) > len(prefix) && asciiEqualFold(typ[:len(prefix)], prefix) {
		typ = typ[len(prefix):]
	}
	return asciiEqualFold(typ, want)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// Segment appends the decoding of s, unpadded base64url, to dst
// (growing it only if s does not fit). It refuses padding, characters
// outside the alphabet (line breaks included) and non-zero trailing bits,
// so a token has exactly one encoding. It works on the string directly: no
// copy of s is made.
func Segment(dst []byte, s string) ([]byte, error) {
	if len(s)%4 == 1 {
		return nil, errors.New("bad base64url length")
	}
	if n := len(dst) + len(s)*3/4; n > cap(dst) {
		dst = append(make([]byte, 0, n), dst...)
	}
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		c := b64Decode[s[i]]
		if c == 0xff {
			return nil, errors.New("not base64url")
		}
		acc = acc<<6 | uint32(c)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst = append(dst, byte(acc>>bits))
		}
	}
	if acc&(1<<bits-1) != 0 {
		return nil, errors.New("non-canonical base64url")
	}
	return dst, nil
}

// b64Decode maps a base64url character to its value, 0xff for others.
var b64Decode = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = byte(i)
	}
	return t
}()
