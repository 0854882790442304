package server

import (
	"net/http"
	"slices"
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
