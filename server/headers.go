package server

import "net/http"

// commonHeaders sets the headers every answer carries:
// X-Content-Type-Options: nosniff, so that no browser second-guesses a JSON
// (or YAML) answer's Content-Type and renders it as HTML.
func commonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
