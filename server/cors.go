package server

import (
	"net/http"
	"strings"

	"github.com/rs/cors"
)

// corsPaths are the endpoints a browser app on another origin calls: sign
// in and refresh, revoke, logout, sign up, and its own sessions. The
// server-to-server endpoints (introspection) and the public documents
// (metadata, JWKS) get no CORS headers.
var corsPaths = []string{"/oauth/token", "/oauth/revoke", "/logout", "/users", "/sessions"}

func corsPath(p string) bool {
	for _, c := range corsPaths {
		if p == c || strings.HasPrefix(p, c+"/") {
			return true
		}
	}
	return false
}

// withCORS answers CORS preflights and adds the CORS headers (Fetch
// standard, "CORS protocol") for the origins in Options.CORSAllowedOrigins,
// on corsPaths only. The origins are exact (config refuses wildcards), so
// allowing credentials is safe. With no origins it changes nothing.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	c := cors.New(cors.Options{
		AllowedOrigins:   origins,
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodDelete},
		AllowedHeaders:   []string{"Authorization", "Content-Type", "X-Request-Id"},
		ExposedHeaders:   []string{"Retry-After", "WWW-Authenticate", "Token-Expired", "X-Request-Id"},
		AllowCredentials: true,
		MaxAge:           600,
	})
	withHeaders := c.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if corsPath(r.URL.Path) {
			withHeaders.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
