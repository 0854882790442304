package server

import (
	"bytes"
	"net/http"
	"time"

	"github.com/tokend/tokend/api"
)

// handleOpenAPI is GET /openapi.yaml: the OpenAPI document built into the
// binary.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	serveFile(w, r, api.Spec())
}

// handleDocs is GET /docs: Swagger UI for /openapi.yaml, with every asset
// served by tokend itself (no CDN), so it works offline.
func (s *Server) handleDocs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", api.DocsCSP)
	serveFile(w, r, api.DocsPage())
}

// handleDocsAsset is GET /docs/{file}: a Swagger UI script or style sheet.
func (s *Server) handleDocsAsset(w http.ResponseWriter, r *http.Request) {
	f, ok := api.DocsAsset(r.PathValue("file"))
	if !ok {
		writeNotFound(w, r)
		return
	}
	serveFile(w, r, f)
}

// serveFile serves a built-in file with its ETag, answering conditional
// requests with 304. Browsers revalidate (no-cache) so that an upgraded
// tokend never serves a stale page.
func serveFile(w http.ResponseWriter, r *http.Request, f api.File) {
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.ETag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, f.Name, time.Time{}, bytes.NewReader(f.Data))
}
