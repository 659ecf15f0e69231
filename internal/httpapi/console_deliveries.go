package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
)

// The console's delivery log: the events sent to the shop's backend and
// its Discord channel, newest first, paged and filtered as the admin API
// lists them (jobs.Support.Deliveries), and one delivery's page with the
// body it sends and every attempt, where the operator replays it with the
// admin API's implementation (jobs.Support.ReplayDelivery), confirmed with
// a reason the audit log keeps. A webhook is named by its host only (its
// path or query may hold a token) and Discord by name (its URL holds
// Discord's token). While a delivery is pending its page carries
// data-running and console.js reloads its live part.

// consoleDeliveriesPageSize is how many deliveries a page of the log lists.
const consoleDeliveriesPageSize = 50

// deliveryStatuses and deliveryDestinations are the log's filters.
var (
	deliveryStatuses     = []string{"pending", "delivered", "failed"}
	deliveryDestinations = []string{outbound.DestinationWebhook, outbound.DestinationDiscord}
	deliveryTypes        = append(slices.Clone(outbound.WebhookEvents), outbound.StockLow)
)

// consoleDeliveriesPage is the delivery log.
type consoleDeliveriesPage struct {
	Status, Destination, Type string
	Statuses, Destinations    []string
	Types                     []outbound.EventType
	Rows                      []consoleDelivery
	// Filtered: a filter is set; Next is the next page's URL, "" on the
	// last one; Older: this is not the first page.
	Filtered, Older bool
	Next            string
}

// consoleDelivery is one delivery as the console shows it.
type consoleDelivery struct {
	ID                     int64
	EventID, Type, Status  string
	Destination, Endpoint  string
	Attempts, Replays      int
	LastAnswer             string
	Problem                bool
	Created                time.Time
	NextAttempt, Delivered *time.Time
	OrderRef               string
}

// consoleDeliveryPage is one delivery's page.
type consoleDeliveryPage struct {
	consoleDelivery
	// Body is what the receiver is sent, indented.
	Body string
	// Log is every attempt, oldest first.
	Log []consoleAttempt
	// Running: the delivery is pending, so the page refreshes itself.
	Running bool
}

// consoleAttempt is one attempt of a delivery.
type consoleAttempt struct {
	Replay   int
	At       time.Time
	Answer   string
	Duration string
	Error    string
}

// deliveryEndpoint names where d goes without what may grant access: a
// webhook by its URL's host, Discord by name.
func deliveryEndpoint(d outbound.Destination) string {
	if d.Kind == outbound.DestinationDiscord {
		return "Discord channel"
	}
	if u, err := url.Parse(d.Endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return "unreadable URL"
}

// deliveryAnswer words an answer: its status and error, or its error
// alone when there was no answer.
func deliveryAnswer(status *int, errText string) string {
	var parts []string
	if status != nil {
		parts = append(parts, fmt.Sprintf("HTTP %d", *status))
	}
	if errText != "" {
		parts = append(parts, errText)
	}
	return strings.Join(parts, ": ")
}

func renderConsoleDelivery(d postgres.OutboundDelivery, next map[int64]time.Time) consoleDelivery {
	out := consoleDelivery{ID: d.ID, EventID: d.Event.ID, Type: string(d.Event.Type), Status: d.Status,
		Destination: d.Destination.Kind, Endpoint: deliveryEndpoint(d.Destination), Attempts: d.Attempts, Replays: d.Replays,
		LastAnswer: deliveryAnswer(d.LastStatus, d.LastError), Problem: d.Status == "failed" || (d.Status == "pending" && d.LastError != ""),
		Created: d.CreatedAt, Delivered: d.DeliveredAt}
	if d.Attempts == 0 {
		out.LastAnswer = "not tried yet"
	}
	if at, ok := next[d.ID]; ok {
		out.NextAttempt = &at
	}
	if ref := d.Event.Data.OrderRef; strings.HasPrefix(ref, "ord_") {
		out.OrderRef = ref
	}
	return out
}

// oneOf checks a filter's value: empty (any) or one of allowed.
func oneOf[T ~string](name string, allowed []T, into *string) func(string) error {
	return func(v string) error {
		if v != "" && !slices.Contains(allowed, T(v)) {
			names := make([]string, len(allowed))
			for i, a := range allowed {
				names[i] = string(a)
			}
			return order.Errorf(order.EINVALID, "no %s %q: choose %s", name, v, strings.Join(names, ", "))
		}
		*into = v
		return nil
	}
}

func (s *Server) consoleDeliveries(w http.ResponseWriter, r *http.Request) {
	d := consoleData{Title: "Deliveries", Section: "deliveries"}
	page := &consoleDeliveriesPage{Statuses: deliveryStatuses, Destinations: deliveryDestinations, Types: deliveryTypes}
	d.Deliveries = page
	before, limit, err := pageQuery(r, consoleDeliveriesPageSize, jobs.MaxDeliveries, "status, destination, type, before or limit",
		map[string]func(string) error{
			"status":      oneOf("status", deliveryStatuses, &page.Status),
			"destination": oneOf("destination", deliveryDestinations, &page.Destination),
			"type":        oneOf("event type", deliveryTypes, &page.Type),
		})
	if err != nil {
		s.consoleProblem(w, r, "console-deliveries.html", d, err)
		return
	}
	filter := postgres.DeliveryFilter{Status: page.Status, Destination: page.Destination, Type: outbound.EventType(page.Type)}
	list, err := s.Support.Deliveries(r.Context(), filter, before, int(limit))
	if err != nil {
		s.consoleProblem(w, r, "console-deliveries.html", d, err)
		return
	}
	next, err := s.Support.NextDeliveryAttempts(r.Context(), list)
	if err != nil {
		s.consoleProblem(w, r, "console-deliveries.html", d, err)
		return
	}
	for _, l := range list {
		page.Rows = append(page.Rows, renderConsoleDelivery(l, next))
	}
	page.Filtered, page.Older = page.Status != "" || page.Destination != "" || page.Type != "", before != 0
	if n := len(list); n > 0 && n == int(limit) {
		q := url.Values{"before": {strconv.FormatInt(list[n-1].ID, 10)}}
		for name, v := range map[string]string{"status": page.Status, "destination": page.Destination, "type": page.Type} {
			if v != "" {
				q.Set(name, v)
			}
		}
		if limit != consoleDeliveriesPageSize {
			q.Set("limit", strconv.FormatInt(limit, 10))
		}
		page.Next = ConsolePrefix + "deliveries?" + q.Encode()
	}
	s.renderConsole(w, r, http.StatusOK, "console-deliveries.html", d)
}

func (s *Server) consoleDelivery(w http.ResponseWriter, r *http.Request) {
	d := consoleData{}
	if r.URL.Query().Get("done") == jobs.ActionReplayDelivery {
		d.Notice = "The delivery is queued again, with the same event ID; its attempts show below as they happen."
	}
	s.showConsoleDelivery(w, r, http.StatusOK, d)
}

// showConsoleDelivery renders a delivery's page with d's notice or problem.
func (s *Server) showConsoleDelivery(w http.ResponseWriter, r *http.Request, status int, d consoleData) {
	d.Title, d.Section = "Delivery "+r.PathValue("id"), "deliveries"
	page, err := s.readConsoleDelivery(r)
	if err != nil {
		s.consoleProblem(w, r, "console-delivery.html", d, err)
		return
	}
	d.Delivery = page
	d.Title = fmt.Sprintf("Delivery %d: %s", page.ID, page.Type)
	s.renderConsole(w, r, status, "console-delivery.html", d)
}

func (s *Server) readConsoleDelivery(r *http.Request) (*consoleDeliveryPage, error) {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return nil, order.Errorf(order.ENOTFOUND, "no delivery %q: deliveries are numbered", r.PathValue("id"))
	}
	d, err := postgres.GetOutboundDelivery(ctx, s.Pool, id)
	if err != nil {
		return nil, err
	}
	attempts, err := s.Support.DeliveryAttempts(ctx, id)
	if err != nil {
		return nil, err
	}
	next, err := s.Support.NextDeliveryAttempts(ctx, []postgres.OutboundDelivery{*d})
	if err != nil {
		return nil, err
	}
	page := &consoleDeliveryPage{consoleDelivery: renderConsoleDelivery(*d, next), Running: d.Status == "pending"}
	if page.Body, err = deliveryBody(*d); err != nil {
		return nil, err
	}
	for _, a := range attempts {
		page.Log = append(page.Log, consoleAttempt{Replay: a.Replay, At: a.At, Answer: deliveryAnswer(a.Status, ""),
			Duration: fmt.Sprintf("%d ms", a.Duration.Milliseconds()), Error: a.Error})
	}
	return page, nil
}

// deliveryBody is the body d's receiver is sent, built as each attempt
// builds it, indented to be read.
func deliveryBody(d postgres.OutboundDelivery) (string, error) {
	body, err := outbound.WebhookBody(d.Event)
	if d.Destination.Kind == outbound.DestinationDiscord {
		body, err = outbound.DiscordBody(d.Event)
	}
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return "", fmt.Errorf("indenting the body of event %s: %w", d.Event.ID, err)
	}
	return out.String(), nil
}

// consoleReplayDelivery replays a delivery, confirmed with a reason, then
// sends the operator back to its page.
func (s *Server) consoleReplayDelivery(w http.ResponseWriter, r *http.Request) {
	reason, err := confirmedReason(w, r)
	var id int64
	if err == nil {
		id, err = strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			err = order.Errorf(order.ENOTFOUND, "no delivery %q: deliveries are numbered", r.PathValue("id"))
		}
	}
	if err == nil {
		_, _, err = s.Support.ReplayDelivery(r.Context(), adminActor(r), id, reason)
	}
	if err != nil {
		status, message := s.consoleError(r, err)
		s.showConsoleDelivery(w, r, status, consoleData{Problem: "Nothing was done: " + strings.TrimPrefix(message, "nothing was done: ")})
		return
	}
	http.Redirect(w, r, fmt.Sprintf("%sdeliveries/%d?done=%s", ConsolePrefix, id, jobs.ActionReplayDelivery), http.StatusSeeOther)
}

// deliveryEntry is an order's timeline line for one delivery of an event
// about it, linking to the delivery's page.
func deliveryEntry(d postgres.OutboundDelivery) consoleEntry {
	c := renderConsoleDelivery(d, nil)
	detail := fmt.Sprintf("%s after %d attempt(s)", d.Status, d.Attempts)
	if d.Attempts > 0 {
		detail += ", last answer " + c.LastAnswer
	}
	if d.Replays > 0 {
		detail += fmt.Sprintf(", replayed %d time(s)", d.Replays)
	}
	return consoleEntry{At: d.CreatedAt, Kind: "event", Title: fmt.Sprintf("Event %s to %s %s", d.Event.Type, d.Destination.Kind, c.Endpoint),
		Detail: detail, Problem: c.Problem, Link: fmt.Sprintf("%sdeliveries/%d", ConsolePrefix, d.ID)}
}
