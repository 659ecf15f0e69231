package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProbeURL(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		listenAddr string
		want       string
	}{
		{"service default", nil, "", "http://127.0.0.1:8080/healthz"},
		{"port only", nil, ":9000", "http://127.0.0.1:9000/healthz"},
		{"IPv4 wildcard", nil, "0.0.0.0:9000", "http://127.0.0.1:9000/healthz"},
		{"IPv6 wildcard", nil, "[::]:9000", "http://[::1]:9000/healthz"},
		{"specific address", nil, "10.1.2.3:9000", "http://10.1.2.3:9000/healthz"},
		{"explicit URL wins", []string{"http://127.0.0.1:8091/status"}, ":9000", "http://127.0.0.1:8091/status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probeURL(tc.args, tc.listenAddr)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestProbeURLRefusesWhatItCannotProbe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		listenAddr string
		inError    string
	}{
		{"no port", nil, "localhost", "LISTEN_ADDR"},
		{"empty port", nil, "127.0.0.1:", "LISTEN_ADDR"},
		{"not a URL", []string{"127.0.0.1:8091/status"}, "", "not an http(s) URL"},
		{"other scheme", []string{"ftp://127.0.0.1/"}, "", "not an http(s) URL"},
		{"two arguments", []string{"http://a/", "http://b/"}, "", "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := probeURL(tc.args, tc.listenAddr)
			require.ErrorContains(t, err, tc.inError)
		})
	}
}

// listenAddrOf turns a test server's URL into the LISTEN_ADDR the probe
// would read in the container.
func listenAddrOf(t *testing.T, serverURL string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(serverURL, "http://"))
	require.NoError(t, err)
	return ":" + port
}

func TestProbeAsksHealthzAndPassesOnlyOn200(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		wantCode int
	}{
		{"healthy", http.StatusOK, 0},
		{"unavailable", http.StatusServiceUnavailable, 1},
		{"redirect is not followed", http.StatusFound, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked = append(asked, r.Method+" "+r.URL.Path)
				if tc.status == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", tc.status)
					return
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			env := map[string]string{"LISTEN_ADDR": listenAddrOf(t, srv.URL)}
			var stderr bytes.Buffer

			code := probe(nil, func(k string) string { return env[k] }, &stderr)

			require.Equal(t, tc.wantCode, code, stderr.String())
			require.Equal(t, []string{"GET /healthz"}, asked)
			if tc.wantCode != 0 {
				require.Contains(t, stderr.String(), "/healthz answered")
			}
		})
	}
}

func TestProbeOfAGivenURL(t *testing.T) {
	var asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.Path
	}))
	defer srv.Close()

	code := probe([]string{srv.URL + "/status"}, func(string) string { return "" }, &bytes.Buffer{})

	require.Equal(t, 0, code)
	require.Equal(t, "/status", asked)
}

func TestProbeFailsWhenNothingListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	var stderr bytes.Buffer

	code := probe([]string{"http://" + addr + "/healthz"}, func(string) string { return "" }, &stderr)

	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "GET http://"+addr+"/healthz")
}

func TestProbeRefusesAMalformedListenAddr(t *testing.T) {
	var stderr bytes.Buffer
	code := probe(nil, func(string) string { return "8080" }, &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), `LISTEN_ADDR "8080"`)
}
