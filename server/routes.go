package server

import (
	"net/http"
	"slices"
	"strings"
)

// router is the server's http.ServeMux that also remembers the patterns
// registered on it, so Routes can list them (the OpenAPI test checks that
// the document describes every one).
type router struct {
	*http.ServeMux
	patterns []string
}

func newRouter() *router { return &router{ServeMux: http.NewServeMux()} }

// Handle registers handler for pattern (net/http ServeMux syntax).
func (m *router) Handle(pattern string, handler http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, handler)
}

// HandleFunc registers handler for pattern (net/http ServeMux syntax).
func (m *router) HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, handler)
}

// Routes lists the patterns the server's router serves, in the order they
// were registered, in net/http ServeMux syntax: "[METHOD ]/path", with
// {name} wildcards. A pattern without a method is served for every method;
// such handlers answer 405 to all but POST.
func (s *Server) Routes() []string { return slices.Clone(s.mux.patterns) }

// ServeHTTP serves the request with the route that matches it. The
// ServeMux's own answers for a request no route matches — 404, or 405
// with Allow when a route matches the path with another method — are
// JSON errors like every other answer (writeNotFound; 405 is
// invalid_request, as the POST-only endpoints answer another method).
func (m *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.ServeMux.Handler(r)
	if pattern != "" {
		m.ServeMux.ServeHTTP(w, r)
		return
	}
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status != http.StatusMethodNotAllowed {
		writeNotFound(w, r)
		return
	}
	allow := probe.header.Get("Allow")
	w.Header().Set("Allow", allow)
	e := invalidRequest("method must be " + strings.Join(strings.Split(allow, ", "), " or "))
	e.status = http.StatusMethodNotAllowed
	writeError(w, r, e)
}

// headerProbe records the status and headers an http.Handler writes and
// discards its body: what the ServeMux would answer, without answering.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }
