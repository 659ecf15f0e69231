package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
)

// clock is a hand-moved clock for the progress view's pace.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func refill(done int) jobs.Progress {
	return jobs.Progress{Phase: "making keys", Done: done, Total: 100, Unit: "keys made"}
}
func listing(phase string, done int) jobs.Progress {
	return jobs.Progress{Phase: phase, Done: done, Total: 50, Unit: "stock keys checked"}
}

func TestProgressOnATerminalIsOneLineRewrittenInPlaceWithAnEstimate(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	v := &progressView{out: &out, terminal: true, label: "stock refill price_x", now: c.now}
	v.show(refill(10))
	c.advance(30 * time.Second)
	v.show(refill(37)) // 27 keys in 30 s: 63 left take 70 s
	c.advance(time.Second)
	v.show(refill(37)) // the same line: nothing written
	v.end()
	require.Equal(t, "\rstock refill price_x: 10/100 keys made (making keys)"+
		"\rstock refill price_x: 37/100 keys made, about 1 minute left (making keys)\n",
		strings.ReplaceAll(out.String(), "  ", ""), "each line rewrites the last, and the last ends the line")
	require.NotContains(t, out.String(), "\n\r", "no line of its own until the end")
}

func TestProgressInALogIsPlainLinesAtMostEveryFewSecondsAndAtEachPhase(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	v := &progressView{out: &out, terminal: isTerminal(&out), label: "stock reconcile", now: c.now}
	require.False(t, v.terminal, "a builder is no terminal")
	p1, p2 := "listing project a (1 of 2)", "listing project b (2 of 2)"
	v.show(listing(p1, 0))
	for i := 1; i <= 10; i++ {
		c.advance(time.Second)
		v.show(listing(p1, i*2)) // one line at 5 s and one at 10 s
	}
	c.advance(time.Second)
	v.show(listing(p2, 21)) // a new phase: at once
	c.advance(time.Second)
	v.show(listing(p2, 50)) // finished: at once
	v.end()
	require.Equal(t, []string{
		"stock reconcile: 0/50 stock keys checked (listing project a (1 of 2))",
		"stock reconcile: 10/50 stock keys checked, about 20 seconds left (listing project a (1 of 2))",
		"stock reconcile: 20/50 stock keys checked, about 20 seconds left (listing project a (1 of 2))",
		"stock reconcile: 21/50 stock keys checked (listing project b (2 of 2))",
		"stock reconcile: 50/50 stock keys checked (listing project b (2 of 2))",
	}, strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"))
	require.NotContains(t, out.String(), "\r")
}

// terminalWriter is a writer that says it is a terminal, as a TTY does.
type terminalWriter struct{ strings.Builder }

func (*terminalWriter) IsTerminal() bool { return true }

func TestAWriterMaySayItIsATerminal(t *testing.T) {
	t.Parallel()
	require.True(t, isTerminal(&terminalWriter{}))
	require.False(t, isTerminal(&strings.Builder{}))
}

func TestRoughDurationsReadAsAPersonSaysThem(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		3 * time.Second: "a few seconds", 42 * time.Second: "40 seconds", 61 * time.Second: "1 minute",
		150 * time.Second: "3 minutes", 2 * time.Hour: "2 hours",
	} {
		require.Equal(t, want, roughDuration(d), d)
	}
}
