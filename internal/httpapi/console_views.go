package httpapi

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// What the console's templates render of an order, its units and what
// touched it. Keys are masked to their last characters and Checkout
// Session IDs replaced by the order's reference wherever text may hold
// one (errors, event objects).

// consoleOrderRow is one order in a list.
type consoleOrderRow struct {
	Ref, Email, Status string
	// State and StateReason are the buyer's state (order.OrderBuyerState).
	State, StateReason string
	Created            time.Time
	Keys               string // "2 of 2 keys work"
	FailureCode        string
}

func renderConsoleRow(o *order.Order, now time.Time) consoleOrderRow {
	state := renderOrderState(o, now)
	return consoleOrderRow{Ref: logging.OrderRef(o.CheckoutSessionID), Email: o.CustomerEmail, Status: string(o.Status),
		State: state.State, StateReason: state.StateReason, Created: o.CreatedAt,
		Keys:        fmt.Sprintf("%d of %d keys work", state.KeysWorking, len(o.Keys)),
		FailureCode: o.FailureCode}
}

// consoleOrder is the order page.
type consoleOrder struct {
	consoleOrderRow
	FailureReason string
	// Why says why the order failed or waits, one line a cause; empty
	// when nothing does.
	Why         []string
	Units       []consoleUnit
	Revocations []consoleRevocation
	Timeline    []consoleEntry
	KeyActions  []jobs.KeyAction
	// MailOn: keys by email is configured, so the email can be resent.
	MailOn bool
}

// consoleUnit is one purchased unit and its key, masked.
type consoleUnit struct {
	ID                 int64
	Reference, Product string
	PriceID, ProjectID string
	Status             string // the key's record: pending, active, failed...
	State, StateReason string // the buyer's state (order.KeyBuyerState)
	Key                string // its last characters, "" before delivery
	Expires            string
	LastError          string
}

type consoleRevocation struct {
	Source, SourceID, Action, Reason, Status string
	// Liftable: support may lift it (an early fraud warning's, active).
	Liftable bool
}

// consoleEntry is one line of an order's timeline.
type consoleEntry struct {
	At time.Time
	// Kind: "stripe", "job", "luarmor", "email", "event" or "support".
	Kind, Title, Detail string
	Problem             bool
	// Link is the console page of what the entry names, if it has one.
	Link string
}

func (s *Server) renderConsoleOrder(d *jobs.OrderDetails, a *jobs.OrderActivity, now time.Time) *consoleOrder {
	o := d.Order
	out := &consoleOrder{consoleOrderRow: renderConsoleRow(o, now), FailureReason: logging.ScrubSessionIDs(o.FailureReason),
		KeyActions: jobs.KeyActions, MailOn: s.Mail != nil}
	if o.Status == order.StatusFailed {
		out.Why = append(out.Why, fmt.Sprintf("The order failed (%s): %s", orDash(o.FailureCode), orDash(out.FailureReason)))
	}
	for _, k := range o.Keys {
		state := order.KeyBuyerState(o, k, now)
		u := consoleUnit{ID: k.ID, Reference: k.Reference, Product: o.ProductName(k), PriceID: k.PriceID, ProjectID: k.ProjectID,
			Status: string(k.Status), State: string(state.State), StateReason: string(state.Reason),
			LastError: logging.ScrubSessionIDs(k.LastError)}
		if k.Delivered() {
			u.Key = logging.MaskKey(k.UserKey)
		}
		switch k.Expiry() {
		case order.NeverExpires:
			u.Expires = "never"
		case order.ExpiresAfterFirstUse:
			u.Expires = fmt.Sprintf("%d days after first use", k.KeyDays)
		default:
			u.Expires = time.Unix(*k.AuthExpire, 0).UTC().Format("2006-01-02 15:04 UTC")
		}
		if !k.Delivered() && u.LastError != "" {
			out.Why = append(out.Why, fmt.Sprintf("Unit %s has no key (%s): %s", k.Reference, k.Status, u.LastError))
		}
		out.Units = append(out.Units, u)
	}
	for _, r := range d.Revocations {
		out.Revocations = append(out.Revocations, consoleRevocation{Source: string(r.Source), SourceID: r.SourceID,
			Action: string(r.Action), Reason: r.Reason, Status: string(r.Status),
			Liftable: r.Source == order.SourceEarlyFraudWarning && r.Status == order.RevocationActive})
	}
	for _, j := range a.Jobs {
		if j.State == "retryable" || (j.State == "available" && j.Attempt > 0) {
			last := ""
			if n := len(j.Errors); n > 0 {
				last = ": " + logging.ScrubSessionIDs(j.Errors[n-1].Error)
			}
			out.Why = append(out.Why, fmt.Sprintf("Job %s #%d is retrying (attempt %d of %d, next at %s)%s",
				j.Kind, j.ID, j.Attempt, j.MaxAttempts, j.ScheduledAt.UTC().Format("15:04:05 UTC"), last))
		}
	}
	out.Timeline = consoleTimeline(d, a)
	return out
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// consoleTimeline is everything that touched the order, oldest first:
// Stripe's events, its jobs and their failed attempts, its Luarmor
// requests with Luarmor's answers, its emails, the events sent about it to
// the shop's tools and the support actions on it.
func consoleTimeline(d *jobs.OrderDetails, a *jobs.OrderActivity) []consoleEntry {
	var out []consoleEntry
	sessionID := d.Order.CheckoutSessionID
	seen := map[string]bool{}
	for _, e := range append(slices.Clone(d.Events), a.RevocationEvents...) {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		object := e.ObjectID
		if object == sessionID {
			object = "the Checkout Session"
		}
		out = append(out, consoleEntry{At: e.ReceivedAt, Kind: "stripe", Title: "Stripe event " + e.Type,
			Detail: e.ID + " about " + object})
	}
	for _, j := range a.Jobs {
		out = append(out, consoleEntry{At: j.CreatedAt, Kind: "job", Title: fmt.Sprintf("Job %s #%d queued", j.Kind, j.ID),
			Detail: jobOutcome(j), Problem: j.State == "discarded" || j.State == "retryable"})
		for _, e := range j.Errors {
			out = append(out, consoleEntry{At: e.At, Kind: "job", Problem: true,
				Title:  fmt.Sprintf("Job %s #%d: attempt %d failed", j.Kind, j.ID, e.Attempt),
				Detail: logging.ScrubSessionIDs(e.Error)})
		}
	}
	for _, c := range a.LuarmorCalls {
		out = append(out, luarmorCallEntry(c))
	}
	for _, e := range d.Emails {
		out = append(out, emailEntry(fmt.Sprintf("Keys email (delivery %d)", e.Delivery), e.Status, e.Attempts, e.LastError, e.CreatedAt, e.SentAt))
	}
	for _, e := range a.LifecycleEmails {
		out = append(out, emailEntry("Email: "+strings.ReplaceAll(e.Kind, "_", " "), e.Status, e.Attempts, e.LastError, e.CreatedAt, e.SentAt))
	}
	for _, d := range a.Deliveries {
		out = append(out, deliveryEntry(d))
	}
	for _, e := range a.Audit {
		detail := "by " + e.Actor
		if e.KeyTail != "" {
			detail += ", key " + e.KeyTail
		}
		if e.Reason != "" {
			detail += ": " + e.Reason
		}
		out = append(out, consoleEntry{At: e.At, Kind: "support", Title: "Support action " + e.Action, Detail: detail})
	}
	slices.SortStableFunc(out, func(x, y consoleEntry) int { return x.At.Compare(y.At) })
	return out
}

// luarmorCallEntry words one Luarmor request: its endpoint and answer,
// then the key (masked), how long it took and the job attempt that sent it.
func luarmorCallEntry(c postgres.LuarmorCall) consoleEntry {
	answer := fmt.Sprintf("HTTP %d", c.Status)
	if c.Status == 0 {
		answer = "no answer"
	}
	if c.ErrorClass != "" {
		answer += " (" + strings.ReplaceAll(c.ErrorClass, "_", " ") + ")"
	}
	var detail []string
	if c.KeyTail != "" {
		detail = append(detail, "key "+c.KeyTail)
	}
	detail = append(detail, fmt.Sprintf("%d ms", c.Took.Milliseconds()))
	if c.JobID != 0 {
		detail = append(detail, fmt.Sprintf("by job %s #%d, attempt %d", c.JobKind, c.JobID, c.JobAttempt))
	}
	return consoleEntry{At: c.SentAt, Kind: "luarmor", Title: "Luarmor " + c.Endpoint + ": " + answer,
		Detail: strings.Join(detail, ", "), Problem: c.ErrorClass != ""}
}

func jobOutcome(j postgres.JobSummary) string {
	switch j.State {
	case "completed":
		return fmt.Sprintf("completed after %d attempt(s)", j.Attempt)
	case "retryable":
		return fmt.Sprintf("retrying: attempt %d of %d failed, next at %s", j.Attempt, j.MaxAttempts, j.ScheduledAt.UTC().Format("15:04:05 UTC"))
	case "discarded":
		return fmt.Sprintf("gave up after %d attempt(s)", j.Attempt)
	case "cancelled":
		return "cancelled"
	case "running":
		return fmt.Sprintf("running (attempt %d)", j.Attempt)
	}
	return j.State
}

func emailEntry(title, status string, attempts int, lastError string, created time.Time, sent *time.Time) consoleEntry {
	e := consoleEntry{At: created, Kind: "email", Title: title, Detail: fmt.Sprintf("%s after %d attempt(s)", status, attempts)}
	if sent != nil {
		e.At = *sent
	}
	if lastError != "" {
		e.Detail += ": " + logging.ScrubSessionIDs(lastError)
		e.Problem = status != "sent"
	}
	return e
}

// consoleOverview is the shop at a glance.
type consoleOverview struct {
	Today, Week               postgres.Figures
	Failed, Waiting           []consoleOrderRow
	FailedTotal, WaitingTotal int
	Retrying                  []postgres.JobKindCount
	RetryingTotal             int
	Stock                     []consoleStock
	// Budget draws the Luarmor requests of the last hour.
	Budget *budgetChart
	// CredentialProblems are what the periodic check of the Stripe and
	// Luarmor API keys found (what /readyz reports); CredentialsChecked
	// says the check runs.
	CredentialsChecked bool
	CredentialProblems []string
	// Checks are doctor's checks, as last run; nil when this service
	// does not run them.
	Checks *consoleChecks
}

// consoleStock is one price's stock against its target.
type consoleStock struct {
	jobs.PriceStock
	// Low: fewer keys ready than a quarter of the target.
	Low bool
	// State words the catalog's view as `fulfiller stock` does.
	State string
}

func renderConsoleStock(levels []jobs.PriceStock) []consoleStock {
	var out []consoleStock
	for _, l := range levels {
		c := consoleStock{PriceStock: l, Low: l.Target > 0 && l.Ready*4 < l.Target, State: fmt.Sprintf("target %d", l.Target)}
		switch {
		case l.Orphan():
			c.State = "not stocked: orphan keys (fulfiller stock delete)"
		case l.Target == 0 && l.InCatalog:
			c.State = "not stocked"
		case l.Target == 0:
			c.State = "not in catalog"
		}
		out = append(out, c)
	}
	return out
}

func renderConsoleOverview(v *jobs.Overview) *consoleOverview {
	now := time.Now()
	out := &consoleOverview{Today: v.Today, Week: v.Week, FailedTotal: v.FailedTotal, WaitingTotal: v.WaitingTotal, Retrying: v.Retrying}
	for _, o := range v.Failed {
		out.Failed = append(out.Failed, renderConsoleRow(o, now))
	}
	for _, o := range v.Waiting {
		out.Waiting = append(out.Waiting, renderConsoleRow(o, now))
	}
	for _, c := range v.Retrying {
		out.RetryingTotal += c.Count
	}
	return out
}
