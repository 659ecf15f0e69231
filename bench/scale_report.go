package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

func sortDurations(d []time.Duration) { slices.Sort(d) }

// sortTables orders tables largest first (before retention), then by name.
func sortTables(t []TableBytes) {
	slices.SortFunc(t, func(a, b TableBytes) int {
		if c := cmp.Compare(b.Before, a.Before); c != 0 {
			return c
		}
		return cmp.Compare(a.Table, b.Table)
	})
}

// minTableShare: tables smaller than this share of the database before
// retention are summed into one line.
const minTableShare = 0.01

// writeScaleText writes the scale scenario's section.
func writeScaleText(b *strings.Builder, s *ScaleReport) {
	if s == nil {
		return
	}
	fmt.Fprintf(b, "\n## Years of orders: %s orders\n\n", thousands(s.Orders))
	fmt.Fprintf(b, "A history of %s orders over three years seeded in PostgreSQL (postgrestest.SeedHistory: keys, Stripe events with "+
		"bodies of Stripe's size, renewals, revocations, emails, stock, outbound events), then ANALYZE. Load average at start %s, at end %s.\n\n",
		thousands(s.Orders), s.LoadAtStart, s.LoadAtEnd)
	fmt.Fprintf(b, "Look-ups are requests through HTTP to the running service, one at a time, each from its own client address, cycling "+
		"through %d orders spread over the history (%d unmeasured first), each row for at most %s; periodic rows call the functions "+
		"the jobs call, with their arguments, against the same database. Goals: look-ups p99 < %s, periodic queries p50 < %s.\n\n",
		scaleExamples, scaleWarmup, seconds(s.RowBudgetS), fmtMs(ms(lookupGoal)), fmtMs(ms(periodicGoal)))
	fmt.Fprintf(b, "| who | what | how | n | p50 | p99 | max | goal |\n|---|---|---|--:|--:|--:|--:|---|\n")
	for _, r := range s.Rows {
		goal := "none"
		if r.GoalOn != "" {
			goal = fmt.Sprintf("%s < %s: %s", r.GoalOn, fmtMs(r.GoalMs), metWord(r.Met))
		}
		if r.Cut {
			goal += "; stopped at the row's time budget"
		}
		if r.Errors > 0 {
			goal += fmt.Sprintf("; %d FAILED: %s", r.Errors, r.FirstError)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s | %s |\n",
			r.Group, r.Name, "`"+r.How+"`", r.Samples, fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), goal)
	}
	if len(s.Intake) > 0 {
		fmt.Fprintf(b, "\nWebhook intake (checkout.session.completed, event processing paused, as the intake scenario's intake-only row):\n\n")
		fmt.Fprintf(b, "| history | events/s | p50 | p99 | errors |\n|--:|--:|--:|--:|--:|\n")
		for _, in := range s.Intake {
			fmt.Fprintf(b, "| %s orders | %.0f | %s | %s | %d |\n", thousands(in.Orders), in.EventsPerSecond, fmtMs(in.P50Ms), fmtMs(in.P99Ms), in.Errors)
		}
		if s.IntakeRatio > 0 {
			fmt.Fprintf(b, "\nIntake at %s orders / at %s: **%.2f**.\n", thousands(s.Orders), thousands(scaleCompareOrders), s.IntakeRatio)
		}
		for _, in := range s.Intake {
			if in.Errors > 0 {
				fmt.Fprintf(b, "\nWARNING: intake at %s orders: %d failed requests; first: %s\n", thousands(in.Orders), in.Errors, in.FirstError)
			}
		}
	}
	writeScaleBytes(b, s.Storage)
	if len(s.Phases) > 0 {
		fmt.Fprintf(b, "\nPhases: ")
		var parts []string
		for _, p := range s.Phases {
			parts = append(parts, fmt.Sprintf("%s %.1f s", p.Name, p.Seconds))
		}
		fmt.Fprintf(b, "%s.\n", strings.Join(parts, "; "))
	}
}

// writeScaleBytes writes the bytes per order before and after retention.
func writeScaleBytes(b *strings.Builder, st *ScaleBytes) {
	if st == nil || st.DatabaseBefore == 0 {
		return
	}
	fmt.Fprintf(b, "\nBytes per order: pg_database_size and each table's pg_total_relation_size (indexes, TOAST) / %s orders; "+
		"before is the seeded history, after is one run of the retention job (prune_history's pruner, default ages) over it "+
		"and VACUUM FULL of the pruned tables (what the kept rows hold; a running database reuses the freed space instead).",
		thousands(st.Orders))
	var pruned []string
	for _, k := range sortedKeys(st.Pruned) {
		pruned = append(pruned, fmt.Sprintf("%s %s", k, thousands(int(st.Pruned[k]))))
	}
	if len(pruned) > 0 {
		fmt.Fprintf(b, " Pruned: %s.", strings.Join(pruned, ", "))
	}
	fmt.Fprintf(b, "\n\n| table | before | after |\n|---|--:|--:|\n")
	var restBefore, restAfter int64
	for _, t := range st.Tables {
		if float64(t.Before) < minTableShare*float64(st.DatabaseBefore) {
			restBefore += t.Before
			restAfter += t.After
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.Table, bytesPerOrder(t.Before, st.Orders), bytesPerOrder(t.After, st.Orders))
	}
	fmt.Fprintf(b, "| other tables | %s | %s |\n", bytesPerOrder(restBefore, st.Orders), bytesPerOrder(restAfter, st.Orders))
	fmt.Fprintf(b, "| **database** | **%s** | **%s** |\n", bytesPerOrder(st.DatabaseBefore, st.Orders), bytesPerOrder(st.DatabaseAfter, st.Orders))
	ratio := float64(st.DatabaseAfter) / float64(st.DatabaseBefore)
	fmt.Fprintf(b, "\nAfter / before: %.2f (goal < 0.50: %s). Database %s before, %s after.\n",
		ratio, metWord(ratio < 0.5), megabytes(st.DatabaseBefore), megabytes(st.DatabaseAfter))
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// bytesPerOrder renders size / orders as bytes or kilobytes (1,000 bytes).
func bytesPerOrder(size int64, orders int) string {
	v := perOrder(size, orders)
	if v < 1000 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.2f KB", v/1000)
}

func megabytes(size int64) string { return fmt.Sprintf("%.0f MB", float64(size)/1e6) }

// thousands renders n with a comma between each group of three digits.
func thousands(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []string
	for len(s) > 3 {
		out = append([]string{s[len(s)-3:]}, out...)
		s = s[:len(s)-3]
	}
	out = append([]string{s}, out...)
	r := strings.Join(out, ",")
	if neg {
		r = "-" + r
	}
	return r
}
