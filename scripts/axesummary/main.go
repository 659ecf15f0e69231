// Command axesummary prints one line summing up the browser tests'
// accessibility results (screenshots/axe-results.jsonl, written by
// internal/browsertest), and where the screenshots are, for the CI log.
//
// Usage: go run ./scripts/axesummary [screenshots directory]
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"fulfiller/internal/browsertest/axereport"
)

func main() {
	dir := "screenshots"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	records, err := axereport.Read(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "axesummary: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s; screenshots and results in %s\n", axereport.Summary(records), dir)
}
