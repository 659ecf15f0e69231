package mailcatcher

import (
	"bytes"
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

//go:embed mailbox.html
var pagesSource string

var pages = template.Must(template.New("mailbox").Parse(pagesSource))

// Content security policies. The mailbox's own pages run no script and load
// nothing but the frames of its messages. A message's HTML part is served
// sandboxed (no script, no form, no plugin, an origin of its own) whether
// it is opened in the message page's frame or on its own, and loads nothing
// from anywhere: an email is never trusted to run code here.
const (
	pageCSP        = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	messagePartCSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)

// linkPattern finds the links of a plain-text part, to list them beside
// the message: its HTML part's links are inside a sandbox.
var linkPattern = regexp.MustCompile(`https?://[^\s<>"]+`)

// ServeHTTP serves the mailbox: GET / lists the messages, newest first;
// GET /messages/{id} shows one; /messages/{id}/html, /text and /raw are
// its HTML part, plain-text part and source. Only requests addressed to
// this machine (Host localhost or a loopback address) are answered, so a
// web page elsewhere cannot read the mailbox through a DNS name rebound to
// 127.0.0.1.
func (c *Catcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !loopbackHost(r.Host) {
		http.Error(w, "the mailbox answers only requests to localhost or a loopback address", http.StatusMisdirectedRequest)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	c.mux().ServeHTTP(w, r)
}

func (c *Catcher) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.list)
	mux.HandleFunc("GET /messages/{id}", c.withMessage(c.show))
	mux.HandleFunc("GET /messages/{id}/html", c.withMessage(func(w http.ResponseWriter, _ *http.Request, m Message) {
		if m.HTML == "" {
			http.Error(w, "this message has no HTML part", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Security-Policy", messagePartCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(m.HTML))
	}))
	mux.HandleFunc("GET /messages/{id}/text", c.withMessage(func(w http.ResponseWriter, _ *http.Request, m Message) {
		if m.Text == "" {
			http.Error(w, "this message has no plain-text part", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(m.Text))
	}))
	mux.HandleFunc("GET /messages/{id}/raw", c.withMessage(func(w http.ResponseWriter, _ *http.Request, m Message) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(m.Raw)
	}))
	return mux
}

func (c *Catcher) list(w http.ResponseWriter, _ *http.Request) {
	c.render(w, http.StatusOK, "list", map[string]any{"Messages": c.Messages(), "Keep": c.keep})
}

func (c *Catcher) show(w http.ResponseWriter, _ *http.Request, m Message) {
	c.render(w, http.StatusOK, "message", map[string]any{"Message": m, "Links": linkPattern.FindAllString(m.Text, -1)})
}

// withMessage finds the message the path's {id} names, or answers 404.
func (c *Catcher) withMessage(next func(http.ResponseWriter, *http.Request, Message)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		m, ok := c.Message(id)
		if err != nil || !ok {
			c.render(w, http.StatusNotFound, "missing", map[string]any{"ID": r.PathValue("id"), "Keep": c.keep})
			return
		}
		next(w, r, m)
	}
}

// render executes one of the mailbox's page templates; the page is
// rendered whole before anything is written, so a failure is a clean 500.
func (c *Catcher) render(w http.ResponseWriter, status int, page string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, page, data); err != nil {
		c.logger.Error("rendering a mailbox page", "page", page, "error", err)
		http.Error(w, "rendering the mailbox page failed; the dev log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// loopbackHost is whether a request's Host names this machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
