// Package shop is the shop as its buyers see it: its name, its address,
// where to reach its support, its logo and accent colour (the SHOP_*
// settings), and amounts paid written the way a buyer reads them.
//
// Every value here ends up in a page or an email: the templates escape
// them (html/template), and the checks below keep each one to what it
// claims to be (a URL that is https, a colour that is a colour), so a
// setting can never carry a script or a style of its own.
package shop

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Identity is the shop's face on the order page and in its emails. The
// zero value is a shop with no name: pages and emails then speak for "the
// shop" without naming it.
type Identity struct {
	// Name is SHOP_NAME, as buyers know the shop.
	Name string
	// URL is SHOP_URL, the shop's own site: https, or http on this
	// machine only.
	URL string
	// Support is SHOP_SUPPORT: where a buyer asks for help.
	Support Contact
	// LogoURL is SHOP_LOGO_URL, an https image shown beside the name.
	LogoURL string
	// AccentColor is SHOP_ACCENT_COLOR, #rrggbb in lower case, the colour
	// of links and buttons.
	AccentColor string
}

// Contact is a support contact: an email address or an https page, one of
// the two.
type Contact struct {
	Email string
	URL   string
}

// IsZero reports whether no contact is set.
func (c Contact) IsZero() bool { return c.Email == "" && c.URL == "" }

// Href is the contact as a link: mailto:ADDRESS or the page's URL.
func (c Contact) Href() string {
	if c.Email != "" {
		return "mailto:" + c.Email
	}
	return c.URL
}

// Text is the contact as a buyer reads it: the address, or the page's URL.
func (c Contact) Text() string {
	if c.Email != "" {
		return c.Email
	}
	return c.URL
}

// MaxNameLength bounds SHOP_NAME: a name, not a paragraph.
const MaxNameLength = 100

// ParseName checks SHOP_NAME: one line of at most MaxNameLength
// characters. Markup is not refused, as it is escaped wherever the name is
// shown; control characters (a line break in an email) are.
func ParseName(v string) (string, error) {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n == 0 || n > MaxNameLength {
		return "", fmt.Errorf("must be the shop's name, 1 to %d characters (it has %d)", MaxNameLength, n)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "", errors.New("must be one line of text, without control characters")
	}
	return v, nil
}

// ParseURL checks SHOP_URL: an absolute https URL without credentials;
// plain http only for this machine (localhost or a loopback address), to
// try a shop locally.
func ParseURL(v string) (string, error) {
	u, err := parseWebURL(v)
	if err != nil {
		return "", err
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "", errors.New("must be https (plain http only for localhost), like https://shop.example.com")
	}
	return u.String(), nil
}

// ParseLogoURL checks SHOP_LOGO_URL: an https image address. The order
// page allows images from that address's origin, and the keys email loads
// it in the buyer's mail client, so it is https whatever the host.
func ParseLogoURL(v string) (string, error) {
	u, err := parseWebURL(v)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" {
		return "", errors.New("must be an https URL of an image, like https://shop.example.com/logo.png")
	}
	// The origin goes into the pages' Content-Security-Policy: a host
	// name and a port, nothing a policy would read as more.
	if !plainHost.MatchString(u.Host) {
		return "", errors.New("must name its host as letters, digits, dots and hyphens, with an optional port")
	}
	return u.String(), nil
}

var plainHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// ParseSupport checks SHOP_SUPPORT: a bare email address
// (support@shop.example.com, or mailto:support@shop.example.com) or an
// https URL of a support page.
func ParseSupport(v string) (Contact, error) {
	v = strings.TrimSpace(v)
	if address, ok := strings.CutPrefix(v, "mailto:"); ok || !strings.Contains(v, "://") {
		a, err := mail.ParseAddress(address)
		if err != nil || a.Name != "" || a.Address != address || strings.ContainsAny(address, "?#") {
			return Contact{}, errors.New("must be an email address (support@shop.example.com) or an https URL (https://shop.example.com/support)")
		}
		return Contact{Email: a.Address}, nil
	}
	u, err := parseWebURL(v)
	if err != nil || u.Scheme != "https" {
		return Contact{}, errors.New("must be an https URL (https://shop.example.com/support) or an email address (support@shop.example.com)")
	}
	return Contact{URL: u.String()}, nil
}

var hexColor = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// ParseAccentColor checks SHOP_ACCENT_COLOR: #rrggbb, returned in lower
// case. Nothing else (names, rgb(), shorthand) is taken: the value goes
// into a style sheet as it is.
func ParseAccentColor(v string) (string, error) {
	v = strings.TrimSpace(v)
	if !hexColor.MatchString(v) {
		return "", fmt.Errorf("%q must be a colour written #rrggbb, like #0b55c4", v)
	}
	return strings.ToLower(v), nil
}

// parseWebURL reads an absolute http(s) URL with a host and no
// credentials.
func parseWebURL(v string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("must be an absolute https URL, like https://shop.example.com")
	}
	if u.User != nil {
		return nil, errors.New("must not hold a user name or password")
	}
	return u, nil
}

// isLoopback is whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultAccentColor is the pages' and emails' colour of links and
// buttons without SHOP_ACCENT_COLOR.
const DefaultAccentColor = "#0b55c4"

// Accent is the shop's accent colour, or DefaultAccentColor.
func (id Identity) Accent() string {
	if id.AccentColor == "" {
		return DefaultAccentColor
	}
	return id.AccentColor
}

// LogoOrigin is the scheme and host of the logo ("" without one): the only
// place the order page loads an image from besides itself.
func (id Identity) LogoOrigin() string {
	if id.LogoURL == "" {
		return ""
	}
	u, err := url.Parse(id.LogoURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
