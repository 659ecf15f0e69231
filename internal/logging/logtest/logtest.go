// Package logtest collects a service's log in tests.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a log sink that jobs, HTTP handlers and the test read from
// different goroutines at once.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
