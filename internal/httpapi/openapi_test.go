package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocumentsEveryRoute keeps the document and the route table in
// step: every route is documented and every documented operation is routed.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPIDocument())
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "the OpenAPI document is valid OpenAPI 3")

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var routed []string
	s := &Server{}
	for _, table := range []struct {
		routes   []route
		internal bool
	}{{s.routes(), false}, {s.adminRoutes(), true}} {
		for _, rt := range table.routes {
			// ServeMux's rest-of-path wildcard {name...} is {name} in OpenAPI,
			// and its end-of-path anchor {$} is the path itself.
			pattern := strings.ReplaceAll(strings.ReplaceAll(rt.pattern, "...}", "}"), "{$}", "")
			routed = append(routed, pattern)
			_, path, _ := strings.Cut(pattern, " ")
			item := doc.Paths.Find(path)
			require.NotNil(t, item, pattern)
			// The document tells which listener serves each path: the
			// internal one's paths name it as their server.
			onInternal := len(item.Servers) == 1 && strings.Contains(item.Servers[0].Description, "ADMIN_ADDR")
			require.Equal(t, table.internal, onInternal, "%s is documented on the listener that serves it", pattern)
		}
	}
	slices.Sort(documented)
	slices.Sort(routed)
	require.Equal(t, routed, documented, "routes(), adminRoutes() and openapi.json list the same operations")
}

// TestOpenAPIServed serves the embedded document as JSON.
func TestOpenAPIServed(t *testing.T) {
	mux := http.NewServeMux()
	for _, rt := range (&Server{}).routes() {
		if rt.pattern == "GET /openapi.json" {
			mux.Handle(rt.pattern, rt.handler)
		}
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.JSONEq(t, string(openAPIDocument), rec.Body.String())
}
