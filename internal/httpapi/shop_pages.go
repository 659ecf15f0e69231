package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// The shop on the buyer's pages: its name and logo above every page, its
// accent colour, and on each order what was bought and paid, the receipt
// and where to get help. Every value is escaped by html/template; the
// accent colour, checked #rrggbb at start-up, is the only one written into
// a style sheet.

// shopView is the shop as the pages show it.
type shopView struct {
	Name    string
	URL     string
	LogoURL string
	// SupportHref is mailto:ADDRESS or the support page; SupportText how
	// it reads.
	SupportHref string
	SupportText string
	// StyleHref is the style sheet of the accent colour, "" without one.
	StyleHref string
}

func (s *Server) shopView() *shopView {
	v := &shopView{Name: s.Shop.Name, URL: s.Shop.URL, LogoURL: s.Shop.LogoURL,
		SupportHref: s.Shop.Support.Href(), SupportText: s.Shop.Support.Text()}
	if css := accentStyle(s.Shop.AccentColor); css != nil {
		v.StyleHref = "/assets/" + shopStyleName + "?v=" + css.etag[1:9]
	}
	return v
}

// shopStyleName is the accent colour's style sheet under /assets/.
const shopStyleName = "shop.css"

// accentStyle is the style sheet that gives the pages the accent colour,
// nil without one. A style sheet of its own, served from this origin,
// keeps the pages' policy free of inline styles.
func accentStyle(color string) *asset {
	if color == "" {
		return nil
	}
	body := []byte(":root { --accent: " + color + "; }\n")
	sum := sha256.Sum256(body)
	return &asset{name: shopStyleName, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// serveAsset answers /assets/{name}: the embedded assets, and the accent
// colour's style sheet when SHOP_ACCENT_COLOR is set; any other name, the
// not-found page.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	if _, ok := assets[r.PathValue("name")]; !ok && r.PathValue("name") != shopStyleName {
		s.renderErrorPage(w, r, http.StatusNotFound)
		return
	}
	if r.PathValue("name") == shopStyleName {
		css := accentStyle(s.Shop.AccentColor)
		if css == nil {
			s.renderErrorPage(w, r, http.StatusNotFound)
			return
		}
		setPageHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", css.etag)
		http.ServeContent(w, r, css.name, time.Time{}, bytes.NewReader(css.body))
		return
	}
	serveAsset(w, r)
}

// pageCSPFor is this server's page Content-Security-Policy (pageCSP, with
// the customer portal as a form's destination) with images also allowed
// from the shop's logo's origin, the only other place a page loads
// anything from.
func (s *Server) pageCSPFor() string {
	csp := s.pageCSP()
	if origin := s.Shop.LogoOrigin(); origin != "" {
		csp = strings.Replace(csp, "img-src 'self'", "img-src 'self' "+origin, 1)
	}
	return csp
}
