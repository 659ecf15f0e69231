package axereport_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/browsertest/axereport"
)

func TestParallelAppendsKeepEveryLineWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			require.NoError(t, axereport.Append(dir, axereport.Record{
				Test: fmt.Sprintf("TestPage%d", i), State: "delivered", Size: "phone",
				Counts: map[string]int{"moderate": 1}, Violations: []string{"region (moderate)", strings.Repeat("x", 3000)},
			}))
		})
	}
	wg.Wait()
	records, err := axereport.Read(dir)
	require.NoError(t, err)
	require.Len(t, records, 40)
}

func TestReadKeepsTheLastResultOfAStateAndSummaryCountsByImpact(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, rec := range []axereport.Record{
		{Test: "TestA", State: "waiting", Size: "desktop", Counts: map[string]int{"serious": 1}, Violations: []string{"color-contrast (serious)"}},
		{Test: "TestA", State: "waiting", Size: "phone", Counts: map[string]int{"moderate": 1}, Violations: []string{"region (moderate)"}},
		{Test: "TestB", State: "form", Size: "desktop", Counts: map[string]int{"moderate": 1}, Violations: []string{"region (moderate)"}},
		// TestA run again, fixed.
		{Test: "TestA", State: "waiting", Size: "desktop", Counts: map[string]int{}, Violations: []string{}},
	} {
		require.NoError(t, axereport.Append(dir, rec))
	}
	records, err := axereport.Read(dir)
	require.NoError(t, err)
	require.Len(t, records, 3)
	require.Equal(t,
		"axe: 2 page states checked (3 checks at desktop and phone sizes); violations: critical 0, serious 0, moderate 2 (region×2), minor 0",
		axereport.Summary(records))
}

func TestReadWithoutResults(t *testing.T) {
	t.Parallel()
	records, err := axereport.Read(t.TempDir())
	require.NoError(t, err)
	require.Equal(t, "axe: no page state was checked", axereport.Summary(records))

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, axereport.FileName), []byte("{\"test\":\n"), 0o644))
	_, err = axereport.Read(dir)
	require.ErrorContains(t, err, "line 1")
}
