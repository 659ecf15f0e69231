package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// The support endpoints (internal listener, admin token or login) call
// jobs.Support, as the CLI does, which records each action in the audit
// log. Keys travel in bodies, never in URLs, which access logs keep.

const maxAdminBody = 4 << 10

// AdminOrderJSON is one order as support sees it: the order API's view,
// plus what happened to it.
type AdminOrderJSON struct {
	// The order API's view, its order_ref among it.
	OrderJSON
	FailureCode   string                `json:"failure_code,omitempty"`
	FailureReason string                `json:"failure_reason,omitempty"`
	Units         []AdminUnitJSON       `json:"units"`
	Events        []AdminEventJSON      `json:"events"`
	Emails        []AdminEmailJSON      `json:"emails"`
	Revocations   []AdminRevocationJSON `json:"revocations"`
	Reissues      []AdminReissueJSON    `json:"reissues"`
}

// AdminUnitJSON is one purchased unit, delivered or not.
type AdminUnitJSON struct {
	Reference string `json:"reference"`
	PriceID   string `json:"price_id"`
	ProjectID string `json:"project_id"`
	Status    string `json:"status"`
	UserKey   string `json:"user_key,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

type AdminEventJSON struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	ObjectID   string `json:"object_id"`
	ReceivedAt int64  `json:"received_at"`
}

type AdminEmailJSON struct {
	Delivery  int    `json:"delivery"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

type AdminRevocationJSON struct {
	Source   string `json:"source"`
	SourceID string `json:"source_id"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
	Status   string `json:"status"`
}

type AdminReissueJSON struct {
	OldUserKey  string `json:"old_user_key"`
	NewUserKey  string `json:"new_user_key,omitempty"`
	Status      string `json:"status"`
	Message     string `json:"message,omitempty"`
	RequestedBy string `json:"requested_by"`
	RequestedAt int64  `json:"requested_at"`
}

// RenderAdminOrder renders an order's details for support.
func RenderAdminOrder(d *jobs.OrderDetails) AdminOrderJSON {
	o := d.Order
	out := AdminOrderJSON{OrderJSON: renderOrder(o), FailureCode: o.FailureCode, FailureReason: o.FailureReason,
		Units: []AdminUnitJSON{}, Events: []AdminEventJSON{}, Emails: []AdminEmailJSON{},
		Revocations: []AdminRevocationJSON{}, Reissues: []AdminReissueJSON{}}
	keyOf := map[int64]string{}
	for _, k := range o.Keys {
		keyOf[k.ID] = k.UserKey
		out.Units = append(out.Units, AdminUnitJSON{Reference: k.Reference, PriceID: k.PriceID, ProjectID: k.ProjectID,
			Status: string(k.Status), UserKey: k.UserKey, LastError: logging.ScrubSessionIDs(k.LastError)})
	}
	for _, e := range d.Events {
		out.Events = append(out.Events, AdminEventJSON{ID: e.ID, Type: e.Type, ObjectID: e.ObjectID, ReceivedAt: e.ReceivedAt.Unix()})
	}
	for _, e := range d.Emails {
		out.Emails = append(out.Emails, AdminEmailJSON{Delivery: e.Delivery, Status: e.Status, Attempts: e.Attempts, LastError: e.LastError})
	}
	for _, r := range d.Revocations {
		out.Revocations = append(out.Revocations, AdminRevocationJSON{Source: string(r.Source), SourceID: r.SourceID,
			Action: string(r.Action), Reason: r.Reason, Status: string(r.Status)})
	}
	for _, r := range d.Reissues {
		out.Reissues = append(out.Reissues, AdminReissueJSON{OldUserKey: keyOf[r.OldKeyID], NewUserKey: keyOf[r.NewKeyID],
			Status: r.Status, Message: r.Message, RequestedBy: r.RequestedBy, RequestedAt: r.CreatedAt.Unix()})
	}
	return out
}

// AdminOrderListJSON is a search's answer: the order API's view of each
// order, newest first, with its reference.
type AdminOrderListJSON struct {
	Orders []AdminListedOrderJSON `json:"orders"`
}

type AdminListedOrderJSON struct {
	// The order API's view, its order_ref among it.
	OrderJSON
	CreatedAt int64 `json:"created_at"`
}

// AdminQueuedJSON answers an accepted key action.
type AdminQueuedJSON struct {
	Action   string `json:"action"`
	Status   string `json:"status"`
	OrderRef string `json:"order_ref"`
	JobID    int64  `json:"job_id"`
	// LinkRotated: a reissue asked with rotate_link rotated the order's
	// access; the fresh link is emailed once the new key is delivered.
	LinkRotated bool `json:"link_rotated,omitempty"`
}

// AdminRotatedJSON answers a rotation of an order's access.
type AdminRotatedJSON struct {
	Action           string `json:"action"` // rotate-link
	OrderRef         string `json:"order_ref"`
	AccessGeneration int64  `json:"access_generation"`
	// EmailDelivery is the keys email queued with the fresh link; absent
	// when none was, and NoEmail says why.
	EmailDelivery int    `json:"email_delivery,omitempty"`
	NoEmail       string `json:"no_email,omitempty"`
}

func (s *Server) adminGetOrder(w http.ResponseWriter, r *http.Request) {
	d, err := s.Support.Order(r.Context(), r.PathValue("id_or_ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RenderAdminOrder(d))
}

func (s *Server) adminRetryOrder(w http.ResponseWriter, r *http.Request) {
	reason, err := adminReason(w, r)
	var o *order.Order
	if err == nil {
		o, err = s.Support.Retry(r.Context(), adminActor(r), r.PathValue("id_or_ref"), reason)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, renderOrder(o))
}

// adminLiftRevocation answers POST
// /v1/admin/orders/{id_or_ref}/revocations/{source_id}/lift: support lifts
// an early fraud warning's revocation of the order's payment; 202 once the
// lift_revocation job is queued.
func (s *Server) adminLiftRevocation(w http.ResponseWriter, r *http.Request) {
	reason, err := adminReason(w, r)
	var q *jobs.LiftQueued
	if err == nil {
		q, err = s.Support.LiftRevocation(r.Context(), adminActor(r), r.PathValue("id_or_ref"), r.PathValue("source_id"), reason)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, AdminQueuedJSON{Action: jobs.ActionLiftRevocation, Status: "queued", OrderRef: q.OrderRef, JobID: q.JobID})
}

// adminRotateLink answers POST /v1/admin/orders/{id_or_ref}/rotate-link,
// with an optional body {"reason": "..."}: support revokes the order's
// Checkout Session ID and every link signed before, and the buyer is
// emailed a fresh link. Done when answered (200).
func (s *Server) adminRotateLink(w http.ResponseWriter, r *http.Request) {
	reason, err := adminReason(w, r)
	var rot *jobs.RotatedAccess
	if err == nil {
		rot, err = s.Support.RotateOrderAccess(r.Context(), adminActor(r), r.PathValue("id_or_ref"), reason)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AdminRotatedJSON{Action: "rotate-link", OrderRef: rot.OrderRef, AccessGeneration: rot.Generation,
		EmailDelivery: rot.EmailDelivery, NoEmail: rot.NoEmail})
}

// adminFindOrders answers GET /v1/admin/orders?discord=; keys and email
// addresses are searched with POST /v1/admin/orders/search, keeping them
// out of URLs (and so out of access logs).
func (s *Server) adminFindOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("key") || q.Has("user_key") {
		s.writeError(w, r, order.Errorf(order.EINVALID, `keys never go into URLs: POST /v1/admin/orders/search with {"user_key":"..."}`))
		return
	}
	if q.Has("email") {
		s.writeError(w, r, order.Errorf(order.EINVALID,
			`email addresses never go into URLs (access logs keep them): POST /v1/admin/orders/search with {"email":"..."}`))
		return
	}
	for name, values := range q {
		if name != "discord" || len(values) != 1 {
			s.writeError(w, r, order.Errorf(order.EINVALID,
				`give discord once, or POST /v1/admin/orders/search with {"email":"..."} or {"user_key":"..."}`))
			return
		}
	}
	s.findOrders(w, r, jobs.OrderQuery{DiscordID: q.Get("discord")})
}

func (s *Server) adminSearchOrders(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email     string `json:"email"`
		DiscordID string `json:"discord_id"`
		UserKey   string `json:"user_key"`
	}
	if err := decodeAdminBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.findOrders(w, r, jobs.OrderQuery{Email: req.Email, DiscordID: req.DiscordID, UserKey: req.UserKey})
}

func (s *Server) findOrders(w http.ResponseWriter, r *http.Request, q jobs.OrderQuery) {
	orders, err := s.Support.FindOrders(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := AdminOrderListJSON{Orders: []AdminListedOrderJSON{}}
	for _, o := range orders {
		out.Orders = append(out.Orders, AdminListedOrderJSON{OrderJSON: renderOrder(o), CreatedAt: o.CreatedAt.Unix()})
	}
	writeJSON(w, http.StatusOK, out)
}

// adminKeyAction answers POST /v1/admin/keys/{action} with
// {"user_key", "reason"} (or {"user_key", "discord_id"} for set-discord):
// 202 once the job is queued.
func (s *Server) adminKeyAction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserKey    string `json:"user_key"`
		Reason     string `json:"reason"`
		DiscordID  string `json:"discord_id"`
		RotateLink bool   `json:"rotate_link"`
	}
	if err := decodeAdminBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := s.Support.KeyAction(r.Context(), adminActor(r), jobs.KeyRequest{Action: jobs.KeyAction(r.PathValue("action")),
		UserKey: req.UserKey, Reason: req.Reason, DiscordID: req.DiscordID, RotateLink: req.RotateLink})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, AdminQueuedJSON{Action: string(q.Action), Status: "queued", OrderRef: q.OrderRef, JobID: q.JobID,
		LinkRotated: q.Rotation != nil})
}

// adminReason reads an order action's optional body, {"reason": "..."}:
// the reason the audit log keeps, "" without a body (the action is then
// audited with no reason), as the console's actions are with theirs.
func adminReason(w http.ResponseWriter, r *http.Request) (string, error) {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength == 0 {
		return "", nil
	}
	if err := decodeAdminBody(w, r, &req); err != nil {
		return "", err
	}
	return strings.TrimSpace(req.Reason), nil
}

// decodeAdminBody reads one JSON object of known fields, at most 4 KiB.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, v any) error {
	invalid := order.Errorf(order.EINVALID, "the body must be one JSON object of the documented fields, at most 4 KiB")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		return invalid
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return invalid
	}
	return nil
}

// AdminAuditJSON is one entry of the audit log.
type AdminAuditJSON struct {
	ID       int64          `json:"id"`
	At       int64          `json:"at"`
	Actor    string         `json:"actor"`
	Action   string         `json:"action"`
	OrderID  *int64         `json:"order_id,omitempty"`
	OrderRef string         `json:"order_ref,omitempty"`
	KeyTail  string         `json:"key_tail,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Detail   map[string]any `json:"detail"`
}

// adminAuditLog answers GET /v1/admin/audit[?before=ID][&order=ID_OR_REF]
// [&limit=N]: support actions, newest first; page with before= the last
// entry's id.
func (s *Server) adminAuditLog(w http.ResponseWriter, r *http.Request) {
	var q postgres.AuditQuery
	before, limit, err := pageQuery(r, 100, jobs.MaxAuditEntries, "before, limit or order", map[string]func(string) error{
		"order": func(v string) error {
			d, err := s.Support.Order(r.Context(), v)
			if err == nil {
				q.OrderID = d.Order.ID
			}
			return err
		},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Before, q.Limit = before, int(limit)
	entries, err := s.Support.AuditLog(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Entries []AdminAuditJSON `json:"entries"`
	}{Entries: []AdminAuditJSON{}}
	for _, e := range entries {
		out.Entries = append(out.Entries, AdminAuditJSON{ID: e.ID, At: e.At.Unix(), Actor: e.Actor, Action: e.Action,
			OrderID: e.OrderID, OrderRef: e.OrderRef, KeyTail: e.KeyTail, Reason: e.Reason, Detail: e.Detail})
	}
	writeJSON(w, http.StatusOK, out)
}

// pageQuery reads a listing's query: before (an ID to page from), limit
// (defaultLimit when absent, at most maxLimit) and the parameters of
// extra, each given once; any other parameter is refused, naming known.
func pageQuery(r *http.Request, defaultLimit, maxLimit int64, known string, extra map[string]func(string) error) (before, limit int64, err error) {
	limit = defaultLimit
	for name, v := range r.URL.Query() {
		switch {
		case len(v) != 1:
			err = order.Errorf(order.EINVALID, "give %s once", name)
		case name == "before":
			before, err = positiveInt(name, v[0])
		case name == "limit":
			limit, err = positiveInt(name, v[0])
			limit = min(limit, maxLimit)
		case extra[name] != nil:
			err = extra[name](v[0])
		default:
			err = order.Errorf(order.EINVALID, "unknown parameter %q: use %s", name, known)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return before, limit, nil
}

func positiveInt(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, order.Errorf(order.EINVALID, "%s must be a positive whole number", name)
	}
	return n, nil
}
