package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"time"
)

type ctxKey struct{}

// reqInfo travels in the request context: the request id for log lines
// and the OAuth error code, if any, for the access log.
type reqInfo struct {
	id      string
	ip      string // the client's address (clientAddr)
	errCode string
	errLog  string
}

func info(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(ctxKey{}).(*reqInfo)
	if ri == nil {
		return &reqInfo{}
	}
	return ri
}

// RequestID returns the request id of a request handled by Server.
func RequestID(ctx context.Context) string { return info(ctx).id }

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
					panic(p)
				}
				s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("request_id", id), slog.String("path", r.URL.Path), slog.Any("panic", p))
				if sw.status == 0 {
					writeError(sw, r, serverError(nil))
				}
			}
			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", sw.status),
				slog.Duration("duration", time.Since(start)),
				slog.String("ip", clientIP(r)),
			}
			if ri.errCode != "" {
				attrs = append(attrs, slog.String("error", ri.errCode))
			}
			if ri.errLog != "" {
				attrs = append(attrs, slog.String("cause", ri.errLog))
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
			s.metrics.observeRequest(r.Pattern, sw.status, time.Since(start))
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

// audit writes a structured audit event (SPEC §9).
func (s *Server) audit(ctx context.Context, event string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("event", event), slog.String("request_id", RequestID(ctx))}, attrs...)
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}
