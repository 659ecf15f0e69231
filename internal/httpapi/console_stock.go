package httpapi

import (
	"fmt"
	"net/http"
	"strings"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
)

// The console's stock page: each price's stock against its target, the
// long operations under way with their progress, the last stock
// reconciliation's result, and the stock actions of `fulfiller stock`
// (refill, reconcile, delete) through the same jobs.StockAdmin methods,
// each confirmed with a reason the audit log keeps. While an operation
// runs the page carries data-running, and console.js reloads its live
// part every few seconds; without script, its Refresh link does.

// consoleStockPage is the stock page.
type consoleStockPage struct {
	Levels     []consoleStock
	Operations []consoleOperation
	// Running: an operation waits or runs, so the page refreshes itself.
	Running bool
	// LastReconcile is nil before any reconciliation finished.
	LastReconcile *consoleReconcile
}

// consoleOperation is a long operation under way.
type consoleOperation struct {
	JobID                 int64
	Kind, PriceID, Actor  string
	State                 string
	Attempt               int
	Phase, Unit           string
	Done, Total           int
	HasProgress, HasTotal bool
}

// consoleReconcile is how the last stock reconciliation ended.
type consoleReconcile struct {
	jobs.StockReconcileResult
	Outcome string
	Problem bool
}

// consoleStockActions are the stock page's actions, named in its URLs.
const (
	stockActionRefill    = "refill"
	stockActionReconcile = "reconcile"
	stockActionDelete    = "delete"
)

var consoleStockNotices = map[string]string{
	stockActionRefill:    "The refill is queued (or was already under way); its progress shows below.",
	stockActionReconcile: "The stock reconciliation is queued; its progress, then its result, show below.",
	stockActionDelete:    "The deletion of the price's unsold keys is queued; its progress shows below.",
}

func (s *Server) consoleStock(w http.ResponseWriter, r *http.Request) {
	s.showConsoleStock(w, r, http.StatusOK, consoleData{Notice: consoleStockNotices[r.URL.Query().Get("done")]})
}

// showConsoleStock renders the stock page with d's notice or problem.
func (s *Server) showConsoleStock(w http.ResponseWriter, r *http.Request, status int, d consoleData) {
	d.Title, d.Section = "Stock", "stock"
	if s.Stock == nil {
		s.consoleProblem(w, r, "console-stock.html", d, order.Errorf(order.ENOTFOUND, "this service keeps no stock"))
		return
	}
	page, err := s.readConsoleStock(r)
	if err != nil {
		s.consoleProblem(w, r, "console-stock.html", d, err)
		return
	}
	d.Stock = page
	s.renderConsole(w, r, status, "console-stock.html", d)
}

func (s *Server) readConsoleStock(r *http.Request) (*consoleStockPage, error) {
	ctx := r.Context()
	levels, err := s.Stock.Levels(ctx)
	if err != nil {
		return nil, err
	}
	ops, err := jobs.LongOperations(ctx, s.Stock.River)
	if err != nil {
		return nil, err
	}
	last, err := s.Stock.LastReconcile(ctx)
	if err != nil {
		return nil, err
	}
	page := &consoleStockPage{Levels: renderConsoleStock(levels), Running: len(ops) > 0}
	for _, op := range ops {
		o := consoleOperation{JobID: op.JobID, Kind: op.Kind, PriceID: op.PriceID, Actor: op.Actor, State: op.State, Attempt: op.Attempt}
		if p := op.Progress; p != nil {
			o.HasProgress, o.Phase, o.Unit, o.Done, o.Total, o.HasTotal = true, p.Phase, p.Unit, p.Done, p.Total, p.Total > 0
		}
		page.Operations = append(page.Operations, o)
	}
	if last != nil {
		c := &consoleReconcile{StockReconcileResult: *last}
		switch {
		case last.Summary != nil:
			c.Outcome = last.Summary.String()
		default:
			c.Outcome, c.Problem = fmt.Sprintf("it %s: %s", last.State, orDash(logging.ScrubSessionIDs(last.Error))), true
		}
		page.LastReconcile = c
	}
	return page, nil
}

// consoleStockAction carries out a stock action with the implementation
// `fulfiller stock` calls, then sends the operator back to the stock page.
func (s *Server) consoleStockAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	reason, err := confirmedReason(w, r)
	if err == nil {
		err = s.stockAction(r, action, reason)
	}
	if err != nil {
		status, message := s.consoleError(r, err)
		s.showConsoleStock(w, r, status, consoleData{Problem: "Nothing was done: " + strings.TrimPrefix(message, "nothing was done: ")})
		return
	}
	http.Redirect(w, r, ConsolePrefix+"stock?done="+action, http.StatusSeeOther)
}

func (s *Server) stockAction(r *http.Request, action, reason string) error {
	if s.Stock == nil {
		return order.Errorf(order.ENOTFOUND, "this service keeps no stock")
	}
	ctx, actor, priceID := r.Context(), adminActor(r), strings.TrimSpace(r.PostForm.Get("price_id"))
	var err error
	switch action {
	case stockActionRefill:
		_, err = s.Stock.QueueRefill(ctx, actor, reason, priceID)
	case stockActionReconcile:
		_, err = s.Stock.QueueReconcile(ctx, actor, reason)
	case stockActionDelete:
		_, err = s.Stock.QueueDelete(ctx, actor, reason, priceID)
	default:
		err = order.Errorf(order.ENOTFOUND, "no stock action %q: refill, reconcile or delete", action)
	}
	return err
}
