package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Header values every JSON answer carries, made once. They are assigned
// straight into the header map (no canonicalisation, no new slice per
// request); nothing in net/http or this package writes into them.
var (
	headerJSON    = []string{"application/json;charset=UTF-8"}
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
)

// setNoStoreJSON sets the headers of an answer that must not be cached
// (RFC 6749 §5.1).
func setNoStoreJSON(h http.Header) {
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	h["Pragma"] = headerNoCache
}

// bodyPool recycles the buffers token answers are encoded into.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeToken writes a token answer (RFC 6749 §5.1) in one Write: the body
// is encoded by appendToken, which gives the bytes encoding/json would
// (response_test.go checks that), without reflection. net/http adds the
// Content-Length and sends headers and body in one write to the socket.
func writeToken(w http.ResponseWriter, resp tokenResponse) {
	setNoStoreJSON(w.Header())
	w.WriteHeader(http.StatusOK)
	bp := bodyPool.Get().(*[]byte)
	b := appendToken((*bp)[:0], resp)
	_, _ = w.Write(b)
	if cap(b) <= 8<<10 { // don't keep a freak large buffer
		*bp = b
		bodyPool.Put(bp)
	}
}

// appendToken appends resp as JSON, as json.NewEncoder(w).Encode(resp)
// would write it (field order, omitempty, HTML escaping, trailing newline).
func appendToken(b []byte, resp tokenResponse) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, resp.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, resp.TokenType)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, resp.ExpiresIn, 10)
	if resp.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = appendJSONString(b, resp.RefreshToken)
	}
	if resp.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, resp.Scope)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string. Tokens and scopes are plain
// ASCII, which is copied as is; anything encoding/json would escape (control
// characters, quote, backslash, <, >, &, non-ASCII) goes through it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
