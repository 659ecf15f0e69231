package httpapi

import (
	"net/http"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// AdminDeliveryJSON is one delivery of an event to the shop's backend or
// its Discord channel, as the delivery log shows it. A webhook's endpoint
// is its URL; Discord's is "discord" (its URL holds Discord's token).
type AdminDeliveryJSON struct {
	ID          int64  `json:"id"`
	EventID     string `json:"event_id"`
	Type        string `json:"type"`
	OrderRef    string `json:"order_ref,omitempty"`
	Destination string `json:"destination"`
	Endpoint    string `json:"endpoint"`
	Status      string `json:"status"`
	Attempts    int    `json:"attempts"`
	Replays     int    `json:"replays"`
	LastStatus  *int   `json:"last_status,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	CreatedAt   int64  `json:"created_at"`
	UpdatedAt   int64  `json:"updated_at"`
	DeliveredAt *int64 `json:"delivered_at,omitempty"`
	// Log is every attempt, oldest first; only in a single delivery's answer.
	Log []AdminDeliveryAttemptJSON `json:"log,omitempty"`
}

// AdminDeliveryAttemptJSON is one attempt: the receiver's status (absent
// without an answer), how long it took and what went wrong.
type AdminDeliveryAttemptJSON struct {
	Replay     int    `json:"replay"`
	At         int64  `json:"at"`
	Status     *int   `json:"status,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}

func renderDelivery(d postgres.OutboundDelivery) AdminDeliveryJSON {
	out := AdminDeliveryJSON{ID: d.ID, EventID: d.Event.ID, Type: string(d.Event.Type), OrderRef: d.Event.Data.OrderRef,
		Destination: d.Destination.Kind, Endpoint: d.Destination.Endpoint, Status: d.Status, Attempts: d.Attempts,
		Replays: d.Replays, LastStatus: d.LastStatus, LastError: d.LastError, CreatedAt: d.CreatedAt.Unix(), UpdatedAt: d.UpdatedAt.Unix()}
	if d.DeliveredAt != nil {
		at := d.DeliveredAt.Unix()
		out.DeliveredAt = &at
	}
	return out
}

// adminListDeliveries answers GET /v1/admin/webhooks/deliveries
// [?before=ID][&limit=N]: the recent deliveries, newest first; page with
// before= the last one's id.
func (s *Server) adminListDeliveries(w http.ResponseWriter, r *http.Request) {
	before, limit, err := pageQuery(r, 50, jobs.MaxDeliveries, "before or limit", nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.Support.Deliveries(r.Context(), postgres.DeliveryFilter{}, before, int(limit))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Deliveries []AdminDeliveryJSON `json:"deliveries"`
	}{Deliveries: []AdminDeliveryJSON{}}
	for _, d := range list {
		out.Deliveries = append(out.Deliveries, renderDelivery(d))
	}
	writeJSON(w, http.StatusOK, out)
}

// adminGetDelivery answers GET /v1/admin/webhooks/deliveries/{id}: one
// delivery with the log of its attempts.
func (s *Server) adminGetDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := positiveInt("id", r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := postgres.GetOutboundDelivery(r.Context(), s.Pool, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	attempts, err := s.Support.DeliveryAttempts(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := renderDelivery(*d)
	out.Log = []AdminDeliveryAttemptJSON{}
	for _, a := range attempts {
		out.Log = append(out.Log, AdminDeliveryAttemptJSON{Replay: a.Replay, At: a.At.Unix(), Status: a.Status,
			DurationMS: a.Duration.Milliseconds(), Error: a.Error})
	}
	writeJSON(w, http.StatusOK, out)
}

// adminReplayDelivery answers POST
// /v1/admin/webhooks/deliveries/{id}/replay, with an optional body
// {"reason": "..."}: the event is sent again, with the same event ID,
// whatever became of it; 202 once queued, recorded in the audit log.
func (s *Server) adminReplayDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := positiveInt("id", r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := decodeAdminBody(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	replay, jobID, err := s.Support.ReplayDelivery(r.Context(), adminActor(r), id, req.Reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Action     string `json:"action"`
		Status     string `json:"status"`
		DeliveryID int64  `json:"delivery_id"`
		Replay     int    `json:"replay"`
		JobID      int64  `json:"job_id"`
	}{jobs.ActionReplayDelivery, "queued", id, replay, jobID})
}
