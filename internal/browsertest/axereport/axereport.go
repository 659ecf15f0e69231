// Package axereport records the accessibility results of the browser tests,
// one JSON line per page state and size, and sums them up for the CI log.
// It knows nothing of browsers, so the summary can be printed by a plain
// program after the tests.
package axereport

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileName is the results file inside the screenshots directory.
const FileName = "axe-results.jsonl"

// Impacts are axe-core's impact levels, least severe first.
var Impacts = []string{"minor", "moderate", "serious", "critical"}

// Record is the check of one page state at one size.
type Record struct {
	Test   string `json:"test"`
	State  string `json:"state"`
	Size   string `json:"size"` // "desktop" or "phone"
	Width  int64  `json:"width"`
	Height int64  `json:"height"`
	// Counts holds the number of violated rules by impact.
	Counts map[string]int `json:"counts"`
	// Violations are the violated rules' ids, as "id (impact)".
	Violations []string `json:"violations"`
	// Overflow is how far the page scrolls sideways, in CSS pixels.
	Overflow   int64  `json:"overflow,omitempty"`
	Screenshot string `json:"screenshot"`
}

// Append adds rec as one line to dir's results file. Each line is one
// write to a file opened for appending, so tests running in parallel (and
// in several test binaries) never interleave their lines.
func Append(dir string, rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding the accessibility result of %s/%s: %w", rec.Test, rec.State, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close() // the write's error says what went wrong
		return fmt.Errorf("appending to %s: %w", path, err)
	}
	return f.Close()
}

// Read returns dir's records, the last one of each test, state and size
// (a test run again replaces its earlier lines); none if the file is
// missing.
func Read(dir string) ([]Record, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	type key struct{ test, state, size string }
	index := map[key]int{}
	var records []Record
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for n := 1; scanner.Scan(); n++ {
		var rec Record
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		k := key{rec.Test, rec.State, rec.Size}
		if i, ok := index[k]; ok {
			records[i] = rec
			continue
		}
		index[k] = len(records)
		records = append(records, rec)
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return records, nil
}

// Summary is one line: how many page states were checked, at how many
// sizes, and the violated rules by impact, each with its rule ids.
func Summary(records []Record) string {
	if len(records) == 0 {
		return "axe: no page state was checked"
	}
	states := map[string]bool{}
	rules := map[string]map[string]int{} // impact -> rule id -> checks violating it
	counts := map[string]int{}
	for _, rec := range records {
		states[rec.Test+"\x00"+rec.State] = true
		for _, impact := range Impacts {
			counts[impact] += rec.Counts[impact]
		}
		for _, v := range rec.Violations {
			id, impact, _ := strings.Cut(strings.TrimSuffix(v, ")"), " (")
			if rules[impact] == nil {
				rules[impact] = map[string]int{}
			}
			rules[impact][id]++
		}
	}
	var parts []string
	for _, impact := range slices.Backward(Impacts) {
		part := fmt.Sprintf("%s %d", impact, counts[impact])
		if ids := rules[impact]; len(ids) > 0 {
			var named []string
			for _, id := range slices.Sorted(maps.Keys(ids)) {
				named = append(named, fmt.Sprintf("%s×%d", id, ids[id]))
			}
			part += " (" + strings.Join(named, ", ") + ")"
		}
		parts = append(parts, part)
	}
	return fmt.Sprintf("axe: %d page states checked (%d checks at desktop and phone sizes); violations: %s",
		len(states), len(records), strings.Join(parts, ", "))
}
