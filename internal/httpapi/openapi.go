package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes every route of routes(): the public API for
// buyers and the shop's frontend, the shop API behind SHOP_API_TOKEN, the
// pages and the operational endpoints. Tests keep the two in step and check
// real answers against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the service's OpenAPI 3 document.
func OpenAPIDocument() []byte { return append([]byte(nil), openAPIDocument...) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDocument)
}
