package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"fulfiller/internal/order"
)

// decodeJSONBody reads one small JSON object into v, strictly: the request
// must say Content-Type: application/json (a browser sends that cross-site
// only after a CORS preflight, which other origins do not pass, so a
// foreign page cannot make its visitors post here), and unknown fields,
// trailing data and bodies over max bytes are refused.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any, max int64) error {
	if mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mediaType != "application/json" {
		return order.Errorf(order.EINVALID, "send the body as JSON with Content-Type: application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return order.Errorf(order.EINVALID, "the body is larger than %d bytes", max)
		}
		return order.Errorf(order.EINVALID, "the body must be one JSON object with the documented fields")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return order.Errorf(order.EINVALID, "the body must be one JSON object and nothing after it")
	}
	return nil
}
