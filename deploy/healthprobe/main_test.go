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

// envOf is a getenv over a fixed environment.
func envOf(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestProbeURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"service default: the internal listener on the loopback", nil, nil, "http://127.0.0.1:9090/healthz"},
		{"port only", nil, map[string]string{"ADMIN_ADDR": ":9000"}, "http://127.0.0.1:9000/healthz"},
		{"IPv4 wildcard", nil, map[string]string{"ADMIN_ADDR": "0.0.0.0:9000"}, "http://127.0.0.1:9000/healthz"},
		{"IPv6 wildcard", nil, map[string]string{"ADMIN_ADDR": "[::]:9000"}, "http://[::1]:9000/healthz"},
		{"specific address", nil, map[string]string{"ADMIN_ADDR": "10.1.2.3:9000"}, "http://10.1.2.3:9000/healthz"},
		{"former name", nil, map[string]string{"METRICS_ADDR": ":9100"}, "http://127.0.0.1:9100/healthz"},
		{"ADMIN_ADDR before its former name", nil, map[string]string{"ADMIN_ADDR": ":9000", "METRICS_ADDR": ":9100"}, "http://127.0.0.1:9000/healthz"},
		{"not the public listener", nil, map[string]string{"LISTEN_ADDR": ":8000"}, "http://127.0.0.1:9090/healthz"},
		{"explicit URL wins", []string{"http://127.0.0.1:8091/status"}, map[string]string{"ADMIN_ADDR": ":9000"}, "http://127.0.0.1:8091/status"},
		{"explicit URL with the listener off", []string{"http://127.0.0.1:8091/status"}, map[string]string{"ADMIN_ADDR": "off"}, "http://127.0.0.1:8091/status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probeURL(tc.args, envOf(tc.env))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestProbeURLRefusesWhatItCannotProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		inError string
	}{
		{"no port", nil, map[string]string{"ADMIN_ADDR": "localhost"}, `ADMIN_ADDR "localhost"`},
		{"empty port", nil, map[string]string{"ADMIN_ADDR": "127.0.0.1:"}, `ADMIN_ADDR "127.0.0.1:"`},
		{"former name malformed", nil, map[string]string{"METRICS_ADDR": "9090"}, `METRICS_ADDR "9090"`},
		{"internal listener off", nil, map[string]string{"ADMIN_ADDR": "off"}, "ADMIN_ADDR is off"},
		{"off by its former name", nil, map[string]string{"METRICS_ADDR": "off"}, "METRICS_ADDR is off"},
		{"not a URL", []string{"127.0.0.1:8091/status"}, nil, "not an http(s) URL"},
		{"other scheme", []string{"ftp://127.0.0.1/"}, nil, "not an http(s) URL"},
		{"two arguments", []string{"http://a/", "http://b/"}, nil, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := probeURL(tc.args, envOf(tc.env))
			require.ErrorContains(t, err, tc.inError)
		})
	}
}

// adminAddrOf turns a test server's URL into the ADMIN_ADDR the probe
// would read in the container.
func adminAddrOf(t *testing.T, serverURL string) string {
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
			env := map[string]string{"ADMIN_ADDR": adminAddrOf(t, srv.URL)}
			var stderr bytes.Buffer

			code := probe(nil, envOf(env), &stderr)

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

func TestProbeRefusesAMalformedAdminAddr(t *testing.T) {
	var stderr bytes.Buffer
	code := probe(nil, envOf(map[string]string{"ADMIN_ADDR": "9090"}), &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), `ADMIN_ADDR "9090"`)
}

func TestProbeWithTheInternalListenerOffAsksForAURL(t *testing.T) {
	var stderr bytes.Buffer
	code := probe(nil, envOf(map[string]string{"ADMIN_ADDR": "off"}), &stderr)
	require.Equal(t, 2, code, "a configuration problem, not an unhealthy service")
	require.Contains(t, stderr.String(), "ADMIN_ADDR is off")
	require.Contains(t, stderr.String(), "pass the URL")
}
