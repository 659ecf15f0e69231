package httpapi

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"net/url"
	"strings"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
)

// An order's keys as files, for orders of many keys: GET
// /orders/{id}/keys.txt (one key a line) and keys.csv (product, key,
// status, expiry). They open the order exactly as its page does (openLink,
// findOrder: the same credentials, the same rate limits) and hold the keys
// the page offers to copy, never a revoked or suspended one. Their errors
// are the site's error pages.

// downloadLinkTTL is how long the page's download links work when the page
// was opened by its Checkout Session ID: they carry a signed link instead,
// as every other address the page links to does.
const downloadLinkTTL = manageLinkTTL

func (s *Server) keysText(w http.ResponseWriter, r *http.Request) {
	s.serveKeys(w, r, "txt", "text/plain; charset=utf-8", keysText)
}

func (s *Server) keysCSV(w http.ResponseWriter, r *http.Request) {
	s.serveKeys(w, r, "csv", "text/csv; charset=utf-8; header=present", keysCSV)
}

// serveKeys answers a download of the order's usable keys, written by
// write, as an attachment named after the order's reference.
func (s *Server) serveKeys(w http.ResponseWriter, r *http.Request, ext, contentType string, write func([]keyView) []byte) {
	id := r.PathValue("checkout_session_id")
	link, err := s.openLink(r, id)
	var o *order.Order
	if err == nil {
		o, err = s.findOrder(r, link)
	}
	var view orderView
	if err == nil {
		view, err = newOrderView(o, id, time.Now())
	}
	switch {
	case err != nil && r.Context().Err() != nil:
		return // the client went away
	case err == nil:
	case order.ErrorCode(err) == order.ENOTFOUND:
		s.renderErrorPage(w, r, http.StatusNotFound)
		return
	case order.ErrorCode(err) == order.ETOOMANY:
		w.Header().Set("Retry-After", "1")
		s.renderErrorPage(w, r, http.StatusTooManyRequests)
		return
	default:
		s.logPageError(r, err)
		w.Header().Set("Retry-After", retryAfterUnavailable)
		s.renderErrorPage(w, r, http.StatusServiceUnavailable)
		return
	}
	setPageHeaders(w)
	w.Header().Set("Content-Security-Policy", s.pageCSPFor())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", contentType)
	// The reference is ord_ and hex digits: nothing to quote in it.
	w.Header().Set("Content-Disposition", `attachment; filename="`+view.Ref+`-keys.`+ext+`"`)
	_, _ = w.Write(write(view.UsableKeys()))
}

// UsableKeys are the keys the page offers to copy: those that work.
func (v *orderView) UsableKeys() []keyView {
	var out []keyView
	for _, k := range v.Keys {
		if k.Usable() {
			out = append(out, k)
		}
	}
	return out
}

// keysText is one key a line.
func keysText(keys []keyView) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k.UserKey)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// keysCSV is a header and a row a key: product, key, status and expiry
// (RFC 3339 in UTC, "waits for first use" or "never"), each cell safe to
// open in a spreadsheet (csvCell).
func keysCSV(keys []keyView) []byte {
	var b bytes.Buffer
	out := csv.NewWriter(&b)
	out.UseCRLF = true // RFC 4180
	_ = out.Write([]string{"product", "key", "status", "expires"})
	for _, k := range keys {
		_ = out.Write([]string{csvCell(k.ProductName), csvCell(k.UserKey), csvCell(k.Status), csvCell(k.ExpiryValue())})
	}
	out.Flush() // into memory: cannot fail
	return b.Bytes()
}

// csvCell defuses a cell a spreadsheet would run as a formula (a product
// name is the shop's or Stripe's text): one starting with = + - @, a tab
// or a carriage return is prefixed with an apostrophe, which spreadsheets
// show as text. The CSV writer quotes what needs quoting.
func csvCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// downloadsPath is the order's address for the page's download links: by
// the signed link the page was opened with, else by a fresh one, never by
// the Checkout Session ID. "" (no links) for an order with fewer than two
// keys, none usable, or when no link could be signed.
func (s *Server) downloadsPath(r *http.Request, o *order.Order, v *orderView) string {
	if len(v.Keys) < 2 || len(v.UsableKeys()) == 0 {
		return ""
	}
	link := v.ID
	if !jobs.IsOrderLink(link) {
		links, err := s.orderLinks(r)
		if err != nil {
			s.logPageError(r, err) // the page without its downloads: the keys are on it
			return ""
		}
		link = links.Sign(o, time.Now().Add(downloadLinkTTL))
	}
	return "/orders/" + url.PathEscape(link)
}
