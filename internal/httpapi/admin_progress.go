package httpapi

import (
	"net/http"

	"fulfiller/internal/jobs"
)

// AdminProgressJSON answers GET /v1/admin/progress: the long operations
// (stock refills, reconciliations and deletions, reconciliations with
// Stripe's events) waiting or running, oldest first, for a page to poll.
type AdminProgressJSON struct {
	Operations []AdminOperationJSON `json:"operations"`
}

// AdminOperationJSON is one long operation and how far it has got.
type AdminOperationJSON struct {
	JobID    int64  `json:"job_id"`
	Kind     string `json:"kind"`
	PriceID  string `json:"price_id,omitempty"`
	Actor    string `json:"actor,omitempty"`
	State    string `json:"state"`
	Attempt  int    `json:"attempt"`
	QueuedAt int64  `json:"queued_at"`
	// Progress is null until the job records some.
	Progress *AdminProgressValueJSON `json:"progress"`
}

// AdminProgressValueJSON is a job's recorded progress (jobs.Progress).
type AdminProgressValueJSON struct {
	Phase     string `json:"phase"`
	Done      int    `json:"done"`
	Total     int    `json:"total"`
	Unit      string `json:"unit"`
	UpdatedAt int64  `json:"updated_at"`
}

func (s *Server) adminProgress(w http.ResponseWriter, r *http.Request) {
	ops, err := jobs.LongOperations(r.Context(), s.Support.River)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := AdminProgressJSON{Operations: []AdminOperationJSON{}}
	for _, op := range ops {
		o := AdminOperationJSON{JobID: op.JobID, Kind: op.Kind, PriceID: op.PriceID, Actor: op.Actor, State: op.State,
			Attempt: op.Attempt, QueuedAt: op.QueuedAt.Unix()}
		if p := op.Progress; p != nil {
			o.Progress = &AdminProgressValueJSON{Phase: p.Phase, Done: p.Done, Total: p.Total, Unit: p.Unit, UpdatedAt: p.UpdatedAt.Unix()}
		}
		out.Operations = append(out.Operations, o)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
