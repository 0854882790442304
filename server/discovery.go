package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.o.JWKSMaxAge.Seconds())))
	_, _ = w.Write(s.o.Keys.Keys().JWKS())
}

// buildMetadata renders the RFC 8414 authorization server metadata once.
//
// response_types_supported is left out although RFC 8414 §2 calls it
// required: it lists what the authorization endpoint supports, tokend has
// none, and §3.2 says claims with zero elements must be omitted (the OAuth
// working group's reading for servers without an authorization endpoint;
// see docs/design.md, "Decisions of our own").
func (s *Server) buildMetadata() ([]byte, error) {
	base := strings.TrimRight(s.o.Issuer, "/")
	auth := []string{"client_secret_basic", "client_secret_post", "none"}
	return json.Marshal(map[string]any{
		"issuer":                                        s.o.Issuer,
		"token_endpoint":                                base + "/oauth/token",
		"revocation_endpoint":                           base + "/oauth/revoke",
		"introspection_endpoint":                        base + "/oauth/introspect",
		"jwks_uri":                                      base + "/.well-known/jwks.json",
		"grant_types_supported":                         []string{"password", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported":         auth,
		"revocation_endpoint_auth_methods_supported":    auth,
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"service_documentation":                         base + "/docs",
		// Not registered with IANA: tokend's revocation feed (SSE), read by
		// confidential clients with the scope events:read.
		"revocation_events_endpoint": base + "/events",
	})
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(s.metadata)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// handleReadyz answers 200 when the store answers a ping within a second
// (and, on Redis, has memory left for writes: Options.Ready); else 503
// saying why: "unreachable" or "out_of_memory".
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := s.o.Ready(ctx); err != nil {
		info(r.Context()).errLog = err.Error()
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		w.WriteHeader(http.StatusServiceUnavailable)
		why := "unreachable"
		if errors.Is(err, ErrStoreFull) {
			why = "out_of_memory"
		}
		_, _ = w.Write([]byte(`{"status":"unavailable","store":"` + why + `"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}
