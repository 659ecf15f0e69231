// Command healthprobe is the container image's HEALTHCHECK. The runtime
// image is distroless (no shell, no curl), so this static binary asks the
// service over HTTP and exits 0 on a 200, 1 otherwise.
//
//	healthprobe        GET /healthz on the loopback, at LISTEN_ADDR's port
//	healthprobe URL    GET URL (e.g. the Luarmor sandbox's /status)
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// probeTimeout stays below the HEALTHCHECK --timeout of the Dockerfile, so
// the probe reports why it failed instead of being killed.
const probeTimeout = 3 * time.Second

// defaultListenAddr is the service's LISTEN_ADDR default (README,
// Configuration).
const defaultListenAddr = ":8080"

func main() {
	os.Exit(probe(os.Args[1:], os.Getenv, os.Stderr))
}

// probe returns the process's exit code and explains a failure on stderr.
func probe(args []string, getenv func(string) string, stderr io.Writer) int {
	target, err := probeURL(args, getenv("LISTEN_ADDR"))
	if err != nil {
		fmt.Fprintln(stderr, "healthprobe:", err)
		return 2
	}
	client := &http.Client{
		Timeout: probeTimeout,
		// A redirect is not health: report it rather than follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(target)
	if err != nil {
		fmt.Fprintf(stderr, "healthprobe: GET %s: %v\n", target, err)
		return 1
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthprobe: GET %s answered %s\n", target, resp.Status)
		return 1
	}
	return 0
}

// probeURL is the URL given as the only argument, or else /healthz on the
// loopback at the port of listenAddr (the service's LISTEN_ADDR).
func probeURL(args []string, listenAddr string) (string, error) {
	switch len(args) {
	case 0:
	case 1:
		u, err := url.Parse(args[0])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%q is not an http(s) URL like http://127.0.0.1:8091/status", args[0])
		}
		return u.String(), nil
	default:
		return "", errors.New("usage: healthprobe [URL]")
	}
	if listenAddr == "" {
		listenAddr = defaultListenAddr
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil || port == "" {
		return "", fmt.Errorf("LISTEN_ADDR %q is not host:port (for example :8080)", listenAddr)
	}
	// A wildcard address listens on the loopback too; a specific one may not.
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
