// Package api holds tokend's OpenAPI document and the Swagger UI page that
// renders it, both built into the binary so that GET /openapi.yaml and
// GET /docs work offline. The server package serves them; api_test checks
// the document against the running server in both directions.
package api

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
)

// SwaggerUIVersion is the version of the swagger-ui-dist npm package whose
// files are in swaggerui/.
const SwaggerUIVersion = "5.35.0"

//go:embed openapi.yaml
var openAPI []byte

//go:embed swaggerui/index.html swaggerui/swagger-initializer.js swaggerui/swagger-ui-bundle.js swaggerui/swagger-ui.css
var swaggerUI embed.FS

// File is a built-in file and how to serve it. Data must not be modified.
type File struct {
	Name        string
	ContentType string
	Data        []byte
	ETag        string // a strong entity tag: the quoted start of the SHA-256 of Data
}

func newFile(name, contentType string, data []byte) File {
	sum := sha256.Sum256(data)
	return File{Name: name, ContentType: contentType, Data: data, ETag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

var (
	spec = newFile("openapi.yaml", "application/yaml", openAPI)
	page = mustFile("index.html", "text/html; charset=utf-8")

	// assets are the files GET /docs/{file} serves, by name. The OpenAPI
	// document lists the same names.
	assets = map[string]File{
		"swagger-ui-bundle.js":   mustFile("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
		"swagger-initializer.js": mustFile("swagger-initializer.js", "text/javascript; charset=utf-8"),
		"swagger-ui.css":         mustFile("swagger-ui.css", "text/css; charset=utf-8"),
	}
)

func mustFile(name, contentType string) File {
	data, err := swaggerUI.ReadFile("swaggerui/" + name)
	if err != nil {
		panic("api: " + err.Error()) // the go:embed line and this table disagree
	}
	return newFile(name, contentType, data)
}

// Spec returns the OpenAPI 3.1 document (openapi.yaml).
func Spec() File { return spec }

// DocsPage returns the Swagger UI HTML page served at /docs. It loads its
// assets from docs/<name> and the document from openapi.yaml, relative to
// /docs.
func DocsPage() File { return page }

// DocsAsset returns the Swagger UI asset served at /docs/<name>.
func DocsAsset(name string) (File, bool) {
	f, ok := assets[name]
	return f, ok
}

// DocsAssetNames lists the names DocsAsset knows.
func DocsAssetNames() []string {
	names := make([]string, 0, len(assets))
	for n := range assets {
		names = append(names, n)
	}
	return names
}

// DocsCSP is the Content-Security-Policy of the /docs page: everything from
// tokend itself, nothing from elsewhere. Swagger UI sets inline styles and
// uses data: URLs for its icons.
const DocsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
