package httpapi

import (
	"errors"
	"net/http"

	"fulfiller/internal/jobs"
)

// adminResendEmail queues a new email of a fulfilled order's keys, with an
// optional body {"reason": "..."} for the audit log: 202
// with its delivery number, 404 for an unknown order, 409 while the order
// is not fulfilled, 501 while keys by email is off.
func (s *Server) adminResendEmail(w http.ResponseWriter, r *http.Request) {
	if s.Mail == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{
			"error": "keys by email is off: set SMTP_URL, MAIL_FROM and PUBLIC_BASE_URL", "code": "mail_off"})
		return
	}
	reason, err := adminReason(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	delivery, err := s.Support.ResendEmail(r.Context(), s.Mail, adminActor(r), r.PathValue("id_or_ref"), reason)
	if errors.Is(err, jobs.ErrOrderNotFulfilled) {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error(), "code": "not_fulfilled"})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "queued", "delivery": delivery})
}
