package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Goals the report checks the figures against.
const (
	ratioGoal   = 1.00                   // service intake / baseline intake
	latencyGoal = 250 * time.Millisecond // p50 from webhook sent to key seen
)

// Report is everything one run measured; -json prints it as is.
type Report struct {
	Machine  Machine         `json:"machine"`
	Intake   IntakeReport    `json:"intake"`
	Latency  *LatencyReport  `json:"latency,omitempty"`
	Budget   []BudgetRow     `json:"budget,omitempty"`
	Fairness *FairnessReport `json:"fairness,omitempty"`
	Stock    *StockReport    `json:"stock,omitempty"`
	Burst    *BurstReport    `json:"burst,omitempty"`
	Scale    *ScaleReport    `json:"scale,omitempty"`
}

// Machine describes where the figures come from.
type Machine struct {
	CPUs       int    `json:"cpus"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	GoVersion  string `json:"go_version"`
	PostgreSQL string `json:"postgresql"`
	// PGSettings are the server settings that change write costs most.
	PGSettings string `json:"postgresql_settings"`
}

// IntakeReport is the webhook intake comparison.
type IntakeReport struct {
	Concurrency int         `json:"concurrency"`
	WarmupS     float64     `json:"warmup_s"`
	DurationS   float64     `json:"duration_s"`
	PoolSize    int32       `json:"pool_size"`
	Rows        []IntakeRow `json:"rows"`
	Ratio       float64     `json:"ratio"` // service (unpaid) / baseline, the median round's
	// Rounds are every round's figures, in the order they ran; Rows hold
	// the median round's.
	Rounds []IntakeRoundFigures `json:"rounds,omitempty"`
	// Processing is how fast the workers acted on the events a separate
	// intake-only window recorded, once event processing resumed.
	Processing *Drain   `json:"processing,omitempty"`
	RatioGoal  float64  `json:"ratio_goal"`
	RatioMet   bool     `json:"ratio_met"`
	Notes      []string `json:"notes,omitempty"`
	byKey      map[string]int
}

// IntakeRow is one handler under load.
type IntakeRow struct {
	Key             string  `json:"key"` // baseline, service_unpaid, service_paid
	Name            string  `json:"name"`
	EventsPerSecond float64 `json:"events_per_s"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	// The slowest and fastest whole second of the window, in events.
	SlowestSecond int    `json:"slowest_second,omitempty"`
	FastestSecond int    `json:"fastest_second,omitempty"`
	OK            int    `json:"ok"`     // 200s in the timed window
	Errors        int    `json:"errors"` // failures in the timed window
	WarmupErrors  int    `json:"warmup_errors"`
	FirstError    string `json:"first_error,omitempty"`
	// Stored is the number of rows the handler wrote over the whole phase,
	// to compare with OKTotal: every 200 must have its row.
	Stored  int `json:"stored"`
	OKTotal int `json:"ok_total"`
	// CPU over the timed window: the busy share of all cores, the share
	// the hypervisor stole, and the CPU time per event of the whole
	// machine and of this process alone (the rest is, in practice,
	// PostgreSQL).
	CPUBusy         float64 `json:"cpu_busy,omitempty"`
	CPUSteal        float64 `json:"cpu_steal,omitempty"`
	CPUPerEventUs   float64 `json:"cpu_per_event_us,omitempty"`
	GoCPUPerEventUs float64 `json:"go_cpu_per_event_us,omitempty"`
	RatioToBaseline float64 `json:"ratio_to_baseline,omitempty"`
	FulfilledByEnd  *int    `json:"fulfilled_by_end,omitempty"`
	// processing is the drain of the events an intake-only window
	// recorded, once event processing resumed: see IntakeReport.Processing.
	processing  *Drain
	cpuMeasured bool
}

// intakeRound is one round: the service and the baseline back to back.
type intakeRound struct{ service, baseline IntakeRow }

// IntakeRoundFigures is one round's throughputs.
type IntakeRoundFigures struct {
	BaselineFirst   bool    `json:"baseline_first"`
	BaselinePerS    float64 `json:"baseline_events_per_s"`
	ServicePerS     float64 `json:"service_events_per_s"`
	RatioToBaseline float64 `json:"ratio_to_baseline"`
}

// addRounds records every round's figures, notes any round whose windows
// failed requests or lost rows, and returns the rows of the
// round whose ratio is the median (the lower middle one of an even count),
// which the report's table shows.
func (ir *IntakeReport) addRounds(rounds []intakeRound) (baseline, service IntakeRow) {
	ratio := func(r intakeRound) float64 {
		if r.baseline.EventsPerSecond == 0 {
			return 0
		}
		return r.service.EventsPerSecond / r.baseline.EventsPerSecond
	}
	order := make([]int, len(rounds))
	for i, r := range rounds {
		order[i] = i
		ir.Rounds = append(ir.Rounds, IntakeRoundFigures{BaselineFirst: i%2 == 1,
			BaselinePerS: r.baseline.EventsPerSecond, ServicePerS: r.service.EventsPerSecond, RatioToBaseline: ratio(r)})
		ir.check(fmt.Sprintf("round %d, %s", i+1, r.baseline.Name), r.baseline)
		ir.check(fmt.Sprintf("round %d, %s", i+1, r.service.Name), r.service)
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ratio(rounds[a]), ratio(rounds[b])) })
	median := rounds[order[(len(order)-1)/2]]
	return median.baseline, median.service
}

// Drain is how fast the workers acted on a backlog of recorded events.
type Drain struct {
	Events    int     `json:"events"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_s"`
}

// LatencyReport is the webhook-to-key phase.
type LatencyReport struct {
	Purchases        int     `json:"purchases"`
	LuarmorLatencyMs float64 `json:"luarmor_latency_ms"`
	PollMs           float64 `json:"poll_ms"`
	P50Ms            float64 `json:"p50_ms"`
	P90Ms            float64 `json:"p90_ms"`
	P99Ms            float64 `json:"p99_ms"`
	MaxMs            float64 `json:"max_ms"`
	Goal             float64 `json:"p50_goal_ms"`
	Met              bool    `json:"met"`
	Milestones       []Step  `json:"milestones,omitempty"`
	MilestonesError  string  `json:"milestones_error,omitempty"`
}

// Step is one step's median time since the webhook was sent.
type Step struct {
	Step     string  `json:"step"`
	MedianMs float64 `json:"median_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newIntakeRow turns a load result into a report row.
func newIntakeRow(key, name string, r *loadResult, stored int) IntakeRow {
	row := IntakeRow{
		Key: key, Name: name,
		EventsPerSecond: float64(len(r.latencies)) / r.window.Seconds(),
		P50Ms:           ms(percentile(r.latencies, 50)),
		P99Ms:           ms(percentile(r.latencies, 99)),
		OK:              len(r.latencies), Errors: r.errors, WarmupErrors: r.warmErrors, FirstError: r.firstError,
		Stored: stored, OKTotal: r.okTotal,
	}
	if len(r.perSecond) > 0 {
		row.SlowestSecond, row.FastestSecond = slices.Min(r.perSecond), slices.Max(r.perSecond)
	}
	if r.cpu.measured && len(r.latencies) > 0 {
		n := float64(len(r.latencies))
		row.cpuMeasured = true
		row.CPUBusy = r.cpu.busy
		row.CPUSteal = r.cpu.steal
		row.CPUPerEventUs = float64(r.cpu.machine.Microseconds()) / n
		row.GoCPUPerEventUs = float64(r.cpu.process.Microseconds()) / n
	}
	return row
}

func (ir *IntakeReport) add(row IntakeRow) {
	if ir.byKey == nil {
		ir.byKey = map[string]int{}
	}
	ir.byKey[row.Key] = len(ir.Rows)
	ir.Rows = append(ir.Rows, row)
}

func (ir *IntakeReport) row(key string) *IntakeRow {
	if i, ok := ir.byKey[key]; ok {
		return &ir.Rows[i]
	}
	return nil
}

// compare fills in the ratios to the baseline and the goal check.
func (ir *IntakeReport) compare() {
	base := ir.row("baseline")
	if base == nil || base.EventsPerSecond == 0 {
		return
	}
	for i := range ir.Rows {
		if ir.Rows[i].Key != "baseline" {
			ir.Rows[i].RatioToBaseline = ir.Rows[i].EventsPerSecond / base.EventsPerSecond
		}
	}
	ir.RatioGoal = ratioGoal
	if svc := ir.row("service_unpaid"); svc != nil {
		ir.Ratio = svc.RatioToBaseline
		ir.RatioMet = ir.Ratio >= ratioGoal
	}
	for _, r := range ir.Rows {
		if len(ir.Rounds) > 0 && (r.Key == "baseline" || r.Key == "service_unpaid") {
			continue // checked with every round's, by addRounds
		}
		ir.check(r.Name, r)
	}
}

// check notes a window whose 200s lack their rows, or whose requests
// failed: its figures then do not measure what they claim.
func (ir *IntakeReport) check(name string, r IntakeRow) {
	if r.Stored != r.OKTotal {
		ir.Notes = append(ir.Notes, fmt.Sprintf("%s: %d answers 200 but %d rows stored", name, r.OKTotal, r.Stored))
	}
	if r.Errors > 0 || r.WarmupErrors > 0 {
		ir.Notes = append(ir.Notes, fmt.Sprintf("%s: %d failed requests in the timed window, %d in warm-up; first: %s",
			name, r.Errors, r.WarmupErrors, r.FirstError))
	}
}

func newLatencyReport(r *latencyResult, o latencyOptions) *LatencyReport {
	lr := &LatencyReport{
		Purchases: len(r.seen), LuarmorLatencyMs: ms(o.luarmorLatency), PollMs: ms(o.poll),
		P50Ms: ms(percentile(r.seen, 50)), P90Ms: ms(percentile(r.seen, 90)),
		P99Ms: ms(percentile(r.seen, 99)), MaxMs: ms(percentile(r.seen, 100)),
		Goal: ms(latencyGoal),
	}
	lr.Met = percentile(r.seen, 50) < latencyGoal
	for _, m := range r.milestones {
		lr.Milestones = append(lr.Milestones, Step{Step: m.Name, MedianMs: ms(m.Median)})
	}
	if r.milestonesErr != nil {
		lr.MilestonesError = r.milestonesErr.Error()
	}
	return lr
}

func writeJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText prints the report as Markdown, readable as plain text.
func writeText(w io.Writer, rep *Report) error {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "# fulfiller benchmark\n\n")
	fmt.Fprintf(&b, "Machine: %d CPUs (runtime.NumCPU), %s/%s, %s, PostgreSQL %s (%s), local over TCP loopback.\n",
		m.CPUs, m.OS, m.Arch, m.GoVersion, m.PostgreSQL, m.PGSettings)
	fmt.Fprintf(&b, "The load generator, the handler under test, the Stripe fake, the Luarmor sandbox and PostgreSQL share these CPUs.\n\n")

	if len(rep.Intake.Rows) > 0 {
		writeIntakeText(&b, rep.Intake)
	}

	if lr := rep.Latency; lr != nil {
		fmt.Fprintf(&b, "\n## Webhook received → key visible\n\n")
		fmt.Fprintf(&b, "%d purchases one at a time on an idle service: register the paid session with the Stripe fake, send its webhook, "+
			"poll GET /v1/orders/{id} every %s until it shows the key. Luarmor sandbox answers in %s; the Stripe fake answers at once.\n\n",
			lr.Purchases, fmtMs(lr.PollMs), fmtMs(lr.LuarmorLatencyMs))
		fmt.Fprintf(&b, "| p50 | p90 | p99 | max |\n|--:|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n\n", fmtMs(lr.P50Ms), fmtMs(lr.P90Ms), fmtMs(lr.P99Ms), fmtMs(lr.MaxMs))
		fmt.Fprintf(&b, "Goal p50 < %s: %s.\n\n", fmtMs(lr.Goal), metWord(lr.Met))
		if lr.MilestonesError != "" {
			fmt.Fprintf(&b, "No breakdown: %s.\n", lr.MilestonesError)
		} else {
			fmt.Fprintf(&b, "Median time after the webhook was sent until:\n\n")
			for _, st := range lr.Milestones {
				fmt.Fprintf(&b, "- %s: %s\n", st.Step, fmtMs(st.MedianMs))
			}
		}
	}
	writeBudgetText(&b, rep.Budget)
	writeFairnessText(&b, rep.Fairness)
	writeStockText(&b, rep.Stock)
	writeBurstText(&b, rep.Burst)
	writeScaleText(&b, rep.Scale)
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMs(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func seconds(s float64) string { return (time.Duration(s * float64(time.Second))).String() }

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// writeIntakeText writes the intake section.
func writeIntakeText(b *strings.Builder, in IntakeReport) {
	fmt.Fprintf(b, "## Webhook intake\n\n")
	fmt.Fprintf(b, "%d concurrent senders, each posting its next distinct signed checkout.session.completed event as soon as the last is answered; "+
		"%s warm-up, then %s measured per row. Each row has its own fresh database and a pool of %d PostgreSQL connections.\n\n",
		in.Concurrency, seconds(in.WarmupS), seconds(in.DurationS), in.PoolSize)
	fmt.Fprintf(b, "| handler | events/s | p50 | p99 | errors | vs baseline | CPU busy | CPU/event (Go process) |\n")
	fmt.Fprintf(b, "|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range in.Rows {
		ratio := "1.00"
		if r.Key != "baseline" {
			ratio = fmt.Sprintf("%.2f", r.RatioToBaseline)
		}
		cpu, perEvent := "n/a", "n/a"
		if r.cpuMeasured {
			cpu = fmt.Sprintf("%.0f%%", 100*r.CPUBusy)
			if r.CPUSteal >= 0.005 {
				cpu += fmt.Sprintf(" (+%.0f%% stolen)", 100*r.CPUSteal)
			}
			perEvent = fmt.Sprintf("%.0f µs (%.0f µs)", r.CPUPerEventUs, r.GoCPUPerEventUs)
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %d of %d | %s | %s | %s |\n",
			r.Name, r.EventsPerSecond, fmtMs(r.P50Ms), fmtMs(r.P99Ms), r.Errors, r.Errors+r.OK, ratio, cpu, perEvent)
	}
	fmt.Fprintf(b, "\nService (intake only) / baseline: **%.2f** (goal ≥ %.2f: %s).\n", in.Ratio, in.RatioGoal, metWord(in.RatioMet))
	if len(in.Rounds) > 1 {
		var each []string
		for i, r := range in.Rounds {
			first := "service first"
			if r.BaselineFirst {
				first = "baseline first"
			}
			each = append(each, fmt.Sprintf("%d. %.0f / %.0f = %.2f (%s)", i+1, r.ServicePerS, r.BaselinePerS, r.RatioToBaseline, first))
		}
		fmt.Fprintf(b, "Rounds, service / baseline events/s: %s. The table shows the median round.\n", strings.Join(each, "; "))
	}
	if d := in.Processing; d != nil {
		fmt.Fprintf(b, "Once resumed, the workers acted on the %d events another intake-only window (run after the rounds) recorded in %.1f s: %.0f events/s.\n",
			d.Events, d.Seconds, d.PerSecond)
	}
	if paid := in.row("service_paid"); paid != nil && paid.FulfilledByEnd != nil {
		fmt.Fprintf(b, "In the paid row the River workers had fulfilled %d of the %d orders accepted by the end of the window.\n",
			*paid.FulfilledByEnd, paid.OKTotal)
	}
	var steady []string
	for _, r := range in.Rows {
		if r.FastestSecond > 0 {
			steady = append(steady, fmt.Sprintf("%s %d–%d", r.Key, r.SlowestSecond, r.FastestSecond))
		}
	}
	if len(steady) > 0 {
		fmt.Fprintf(b, "Slowest–fastest second of each window, in events: %s.\n", strings.Join(steady, ", "))
	}
	fmt.Fprintf(b, "CPU busy is all cores, every process; CPU/event is the whole machine's CPU time per event, in brackets this Go process's share "+
		"(senders, handler, fakes); the rest is mostly PostgreSQL.\n")
	for _, n := range in.Notes {
		fmt.Fprintf(b, "\nWARNING: %s\n", n)
	}

}
