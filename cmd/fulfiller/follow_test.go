package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
)

// lockedTerminal is a terminal's output that a test reads while the
// command writes it.
type lockedTerminal struct {
	mu  sync.Mutex
	out strings.Builder
}

func (l *lockedTerminal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.Write(p)
}

func (l *lockedTerminal) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.String()
}

func (*lockedTerminal) IsTerminal() bool { return true }

func TestCtrlCStopsWaitingForARefillWhichGoesOnAndIsFollowedAgain(t *testing.T) {
	t.Parallel()
	const price = "price_follow"
	svc := fulfillertest.StartService(t, fulfillertest.Options{Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
		price: {ProjectID: "proj_follow", KeyDays: 7, Stock: 6, Name: "Weekly key"},
	}}})
	svc.Luarmor.SetLatency(300 * time.Millisecond)
	// The command reads the same catalog as the service.
	catalogFile := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(catalogFile, []byte("prices:\n  "+price+":\n    project_id: proj_follow\n    key_days: 7\n    name: Weekly key\n    stock: 6\n"), 0o600))
	settings := svc.Env()
	settings["CATALOG_FILE"] = catalogFile
	env := envOf(settings)

	// Ctrl-C once the progress line shows.
	ctx, interrupt := context.WithCancel(context.Background())
	term := &lockedTerminal{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"stock", "refill", price}, env, term, &strings.Builder{}) }()
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			require.NoError(t, err, "the command ended before showing progress")
			t.Fatal("the command ended before showing progress")
		default:
		}
		return strings.Contains(term.String(), "\rstock refill "+price+": ")
	}, 20*time.Second, 10*time.Millisecond)

	// Meanwhile the admin API lists it, with its progress.
	req, err := http.NewRequest(http.MethodGet, svc.AdminURL+"/v1/admin/progress", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+fulfillertest.AdminAPIToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var listed httpapi.AdminProgressJSON
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&listed))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, listed.Operations, 1)
	require.Equal(t, "refill_stock", listed.Operations[0].Kind)
	require.Equal(t, price, listed.Operations[0].PriceID)
	require.NotNil(t, listed.Operations[0].Progress)
	require.Equal(t, "keys made", listed.Operations[0].Progress.Unit)

	interrupt()
	require.NoError(t, <-done, "stopping the wait is no failure")
	m := regexp.MustCompile("stopped waiting; the service goes on with job ([0-9]+): follow it again with `fulfiller follow ([0-9]+)`").
		FindStringSubmatch(term.String())
	require.NotNil(t, m, term.String())
	require.Equal(t, m[1], m[2])
	require.Regexp(t, `^refill of the stock of `+price+` queued \(job `+m[1]+`\); waiting for the service\n\r`, term.String())
	require.Less(t, svc.Count(t, "SELECT count(*) FROM stock_keys WHERE status = 'ready'"), 6, "the refill was still under way")

	// The work went on: following it again, in a log this time, sees it
	// to the end.
	var log strings.Builder
	require.NoError(t, run(context.Background(), []string{"follow", m[1]}, env, &log, &strings.Builder{}))
	require.Contains(t, log.String(), "/6 keys made")
	require.NotContains(t, log.String(), "\r", "plain lines in a log")
	require.True(t, strings.HasSuffix(log.String(), "the stock of "+price+" is full\n"), log.String())
	require.Equal(t, 6, svc.Count(t, "SELECT count(*) FROM stock_keys WHERE status = 'ready'"))
	id, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	require.Equal(t, 1, svc.Count(t, "SELECT count(*) FROM river_job WHERE id = $1 AND state = 'completed'", id))
}
