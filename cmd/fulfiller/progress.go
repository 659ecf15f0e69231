package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"fulfiller/internal/jobs"
)

// plainProgressEvery is how often at most progress goes out as a line of
// its own when stdout is no terminal (a pipe, a log), besides each phase
// change.
const plainProgressEvery = 5 * time.Second

// progressView shows a long operation's progress while the CLI waits for
// it: on a terminal, one line rewritten in place; elsewhere, plain lines at
// most every plainProgressEvery and at each phase change.
type progressView struct {
	out      io.Writer
	terminal bool
	// label names the operation, as in "stock refill price_x".
	label string
	now   func() time.Time

	// The pace is measured from the first progress seen in a phase.
	phase       string
	firstDone   int
	firstAt     time.Time
	lastLine    string
	lastPrinted time.Time
	// width is the length of the line on the terminal, which the next
	// rewrite covers.
	width int
}

func newProgressView(out io.Writer, label string) *progressView {
	return &progressView{out: out, terminal: isTerminal(out), label: label, now: time.Now}
}

// isTerminal says whether w is a terminal. A writer may say so itself
// (IsTerminal), as tests do; a file is asked for its mode.
func isTerminal(w io.Writer) bool {
	if t, ok := w.(interface{ IsTerminal() bool }); ok {
		return t.IsTerminal()
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// show shows p.
func (v *progressView) show(p jobs.Progress) {
	now := v.now()
	phaseChanged := p.Phase != v.phase || v.firstAt.IsZero()
	if phaseChanged || p.Done < v.firstDone {
		v.phase, v.firstDone, v.firstAt = p.Phase, p.Done, now
	}
	line := v.line(p, now)
	if line == v.lastLine {
		return
	}
	if v.terminal {
		pad := max(v.width-len(line), 0)
		fmt.Fprintf(v.out, "\r%s%s", line, strings.Repeat(" ", pad))
		v.width = len(line)
		v.lastLine = line
		return
	}
	if !phaseChanged && !p.Finished() && now.Sub(v.lastPrinted) < plainProgressEvery {
		return
	}
	fmt.Fprintln(v.out, line)
	v.lastLine, v.lastPrinted = line, now
}

// end ends the progress line on a terminal, so what follows starts on a
// line of its own.
func (v *progressView) end() {
	if v.terminal && v.width > 0 {
		fmt.Fprintln(v.out)
		v.width = 0
	}
}

// line is p in words: "stock refill price_x: 37/100 keys made, about 2
// minutes left (making keys)".
func (v *progressView) line(p jobs.Progress, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", v.label, p.Done)
	if p.Total > 0 {
		fmt.Fprintf(&b, "/%d", p.Total)
	}
	fmt.Fprintf(&b, " %s", p.Unit)
	if left, ok := v.estimate(p, now); ok {
		fmt.Fprintf(&b, ", %s", left)
	}
	if p.Phase != "" {
		fmt.Fprintf(&b, " (%s)", p.Phase)
	}
	return b.String()
}

// estimate is the time left at the pace measured so far in this phase.
func (v *progressView) estimate(p jobs.Progress, now time.Time) (string, bool) {
	doneHere, elapsed := p.Done-v.firstDone, now.Sub(v.firstAt)
	if p.Total <= 0 || p.Finished() || doneHere <= 0 || elapsed <= 0 {
		return "", false
	}
	left := time.Duration(float64(elapsed) / float64(doneHere) * float64(p.Total-p.Done))
	return "about " + roughDuration(left) + " left", true
}

// roughDuration is d as a person says it: "40 seconds", "2 minutes",
// "3 hours".
func roughDuration(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d < 10*time.Second:
		return "a few seconds"
	case d < time.Minute:
		return plural(int(d.Round(10*time.Second)/time.Second), "second")
	case d < time.Hour:
		return plural(int(d.Round(time.Minute)/time.Minute), "minute")
	}
	return plural(int(d.Round(time.Hour)/time.Hour), "hour")
}
