package httpapi

import (
	"net/http"
	"slices"
)

// orderAPI wraps the order API's handlers: no answer of it (an order with
// its keys, a 404, a 429, a 503) may be stored by a cache, and browsers
// may read it from AllowedOrigins only.
func (s *Server) orderAPI(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" && slices.Contains(s.AllowedOrigins, origin) {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		next(w, r)
	}
}

// preflight answers a browser's CORS preflight: allowed origins may GET;
// others get no CORS headers, which the browser takes as a refusal.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if w.Header().Get("Access-Control-Allow-Origin") == "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "origin not allowed (ALLOWED_ORIGINS)", "code": "forbidden"})
		return
	}
	w.Header().Set("Access-Control-Allow-Methods", "GET")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}
