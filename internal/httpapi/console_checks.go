package httpapi

import (
	"net/http"
	"time"

	"fulfiller/internal/doctor"
)

// The overview's checks: what `fulfiller doctor` checks, run by the
// running service when the operator asks (they call Stripe and Luarmor,
// Luarmor within the fleet's budget) and shown from the process's last
// report otherwise, so a visit spends nothing.

// checksWait is how long the request that asked for a run waits for it
// before the overview says it runs: within the listener's write timeout.
const checksWait = 20 * time.Second

// consoleChecks is the overview's view of the checks.
type consoleChecks struct {
	// Running is the run under way, if any; Last the last report.
	Running *doctor.Run
	Last    *doctor.Report
	Rows    []consoleCheck
	// Took is how long the last run took, rounded.
	Took string
	// OK, Warned and Failed count Last's verdicts.
	OK, Warned, Failed int
}

// consoleCheck is one check's verdict: ok, warn or fail.
type consoleCheck struct {
	Name, Status, Message string
}

var checkStatus = map[doctor.Status]string{doctor.Pass: "ok", doctor.Warn: "warn", doctor.Fail: "fail"}

func (s *Server) renderConsoleChecks() *consoleChecks {
	if s.Checks == nil {
		return nil
	}
	last, running := s.Checks.Last()
	c := &consoleChecks{Running: running, Last: last}
	if last != nil {
		c.OK, c.Warned, c.Failed = last.Counts()
		c.Took = last.Took.Round(10 * time.Millisecond).String()
		for _, r := range last.Results {
			c.Rows = append(c.Rows, consoleCheck{Name: r.Check, Status: checkStatus[r.Status], Message: r.Message})
		}
	}
	return c
}

// consoleRunChecks answers the overview's "Run checks": it starts a run
// (or joins the one under way), waits a while for it, and sends the
// operator back to the overview, which shows its report, or that it runs.
func (s *Server) consoleRunChecks(w http.ResponseWriter, r *http.Request) {
	if s.Checks == nil {
		http.NotFound(w, r)
		return
	}
	run := s.Checks.Start(adminActor(r))
	done := "checks"
	select {
	case <-run.Done():
	case <-time.After(checksWait):
		done = "checks-running"
	case <-r.Context().Done():
		return
	}
	http.Redirect(w, r, ConsolePrefix+"?done="+done+"#checks-heading", http.StatusSeeOther)
}

// consoleOverviewNotices word the outcome of a run of the checks.
var consoleOverviewNotices = map[string]string{
	"checks":         "The checks ran; their verdicts are below.",
	"checks-running": "The checks are still running (Luarmor's budget may be busy); reload the page to see their verdicts.",
}
