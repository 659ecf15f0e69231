// Command healthprobe is the container image's HEALTHCHECK. The runtime
// image is distroless (no shell, no curl), so this static binary asks the
// service over HTTP and exits 0 on a 200, 1 otherwise (2 when it cannot
// tell what to ask).
//
//	healthprobe        GET /healthz on the loopback, at the port of the
//	                   internal listener: ADMIN_ADDR, or METRICS_ADDR (its
//	                   former name) when ADMIN_ADDR is unset, by default
//	                   127.0.0.1:9090
//	healthprobe URL    GET URL (e.g. the Luarmor sandbox's /status)
//
// The public listener (LISTEN_ADDR) no longer serves /healthz: probes,
// metrics and the admin API moved to the internal one, so that nothing
// about the service's state is reachable from the internet. With
// ADMIN_ADDR=off there is no /healthz anywhere, and the probe says so
// rather than guessing a URL.
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

// defaultAdminAddr is the service's ADMIN_ADDR default
// (config.DefaultAdminAddr; not imported, to keep this binary stdlib only).
const defaultAdminAddr = "127.0.0.1:9090"

func main() {
	os.Exit(probe(os.Args[1:], os.Getenv, os.Stderr))
}

// probe returns the process's exit code and explains a failure on stderr.
func probe(args []string, getenv func(string) string, stderr io.Writer) int {
	target, err := probeURL(args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "healthprobe:", err)
		return 2
	}
	client := &http.Client{
		Timeout: probeTimeout,
		// A redirect is not health: report it rather than follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(target) //nolint:gosec // G704: the probe's own URL, from its arguments or environment
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
// loopback at the port of the internal listener.
func probeURL(args []string, getenv func(string) string) (string, error) {
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
	name, addr := adminAddr(getenv)
	if addr == "off" {
		return "", fmt.Errorf("%s is off: the service has no internal listener, so no /healthz to probe; pass the URL to probe as the argument", name)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("%s %q is not host:port (for example :9090)", name, addr)
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

// adminAddr is the internal listener's address as the service reads it,
// with the name of the variable it came from for error messages: ADMIN_ADDR,
// else METRICS_ADDR, else the default. (The service refuses to start when
// both are set and differ, so which one wins then does not matter.)
func adminAddr(getenv func(string) string) (name, addr string) {
	if v := getenv("ADMIN_ADDR"); v != "" {
		return "ADMIN_ADDR", v
	}
	if v := getenv("METRICS_ADDR"); v != "" {
		return "METRICS_ADDR", v
	}
	return "ADMIN_ADDR", defaultAdminAddr
}
