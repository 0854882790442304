package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

type ctxKey struct{}

// reqInfo travels in the request context: the request id for log lines,
// the OAuth error code, if any, and the request's audit event, all for the
// request's one log line.
type reqInfo struct {
	id      string
	ip      string // the client's address (clientAddr)
	errCode string
	errLog  string

	event      string      // the audit event this request produced, if any (see audit)
	eventAttrs []slog.Attr // its fields
}

func info(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(ctxKey{}).(*reqInfo)
	if ri == nil {
		return &reqInfo{}
	}
	return ri
}

// requestID returns the request id of a request handled by Server.
func requestID(ctx context.Context) string { return info(ctx).id }

func noteError(r *http.Request, e *oauthError) {
	ri := info(r.Context())
	ri.errCode = e.code.Error()
	if e.cause != nil {
		ri.errLog = e.cause.Error()
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it cannot forge log structure.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe gives every request an id, recovers panics into a bare 500, and
// writes one access-log line (never bodies, headers or query strings).
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		ri := &reqInfo{id: id, ip: s.clientAddr(r)}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					if ri.event != "" {
						s.logRequest(r, ri, sw.status, time.Since(start)) // keep its audit event
					}
					panic(p)
				}
				s.o.Logger.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("request_id", id), slog.String("path", bound(r.URL.Path)), slog.String("panic", bound(fmt.Sprint(p))))
				if sw.status == 0 {
					writeError(sw, r, serverError(nil))
				}
			}
			s.logRequest(r, ri, sw.status, time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// clientIP is the client's address: the TCP peer, or what a trusted proxy
// says in X-Forwarded-For (Options.TrustedProxies; see clientAddr).
func clientIP(r *http.Request) string {
	if ip := info(r.Context()).ip; ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// logRequest writes the request's one log line and counts it in the
// metrics. A request that produced an audit event logs it on this same
// line: msg "audit", the event and its fields, next to the request fields.
// Other requests log msg "request". One line, one write per request.
func (s *Server) logRequest(r *http.Request, ri *reqInfo, status int, d time.Duration) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	msg := "request"
	var buf [16]slog.Attr // on the stack for the usual line
	attrs := append(buf[:0], slog.String("request_id", ri.id))
	if ri.event != "" {
		msg = "audit"
		attrs = append(attrs, slog.String("event", ri.event))
	}
	attrs = append(attrs,
		slog.String("method", bound(r.Method)),
		slog.String("path", bound(r.URL.Path)),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.String("ip", clientIP(r)),
	)
	if ri.errCode != "" {
		attrs = append(attrs, slog.String("error", ri.errCode))
	}
	if ri.errLog != "" {
		attrs = append(attrs, slog.String("cause", bound(ri.errLog)))
	}
	for _, a := range ri.eventAttrs {
		if a.Key != "request_id" && a.Key != "ip" { // already on the line, same values
			attrs = append(attrs, boundAttr(a))
		}
	}
	s.o.Logger.LogAttrs(r.Context(), level, msg, attrs...)
	s.metrics.observeRequest(r.Pattern, status, d)
}

// audit records a structured audit event (docs/operations.md, "Logs").
// Inside a request the first event rides on the request's own log line
// (logRequest), so an audited request still costs one log write; a further
// event in the same request, or one outside any request, is written at
// once as a line of its own. Either way every audit line has msg "audit",
// event and request_id.
func (s *Server) audit(ctx context.Context, event string, attrs ...slog.Attr) {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok && ri.event == "" {
		ri.event, ri.eventAttrs = event, attrs
		return
	}
	line := []slog.Attr{slog.String("event", event), slog.String("request_id", requestID(ctx))}
	for _, a := range attrs {
		line = append(line, boundAttr(a))
	}
	s.o.Logger.LogAttrs(ctx, slog.LevelInfo, "audit", line...)
}

// maxLogString bounds every string a request can put on a log line (the
// path, the method, an error's cause, an audit field): a 15 KB path costs
// at most this much log, whatever was sent.
const maxLogString = 512

// bound cuts s to at most maxLogString bytes, at a UTF-8 character
// boundary, and says how long it was.
func bound(s string) string {
	if len(s) <= maxLogString {
		return s
	}
	n := maxLogString
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// boundAttr is a with its string value bounded.
func boundAttr(a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString {
		a.Value = slog.StringValue(bound(a.Value.String()))
	}
	return a
}
