package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
)

// EventRetention is how far back Stripe's events API reaches: Stripe keeps
// events for 30 days.
const EventRetention = 30 * 24 * time.Hour

// maxTypesPerListing is how many types[] Stripe accepts in one events
// listing.
const maxTypesPerListing = 20

// maxEventPages bounds one listing (100,000 events), so a server that
// answers has_more=true forever cannot keep the caller paging without end.
const maxEventPages = 1000

// eventPage is a page of the events list with each event left as the JSON
// Stripe sent: the bytes a webhook would have carried, not a re-encoding.
type eventPage struct {
	stripe.APIResource
	Data    []json.RawMessage `json:"data"`
	HasMore bool              `json:"has_more"`
}

// ListEvents lists the events of the given types created at or after
// since, and hands them to visit a page at a time (up to 100 events), each
// as the raw JSON Stripe returned. Within a listing events come newest
// first; more than 20 types take one listing per 20. Events read this way
// are authenticated by the API key, not by a signature. ListEvents stops at
// visit's first error and returns it; an error of its own names the page
// that failed.
func (c *Client) ListEvents(ctx context.Context, types []string, since time.Time, visit func(events []json.RawMessage) error) error {
	if len(types) == 0 {
		// Stripe would list every event of the account.
		return c.wrap("listing events", "", errors.New("no event types given"))
	}
	for chunk := range slices.Chunk(types, maxTypesPerListing) {
		if err := c.listEvents(ctx, chunk, since, visit); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) listEvents(ctx context.Context, types []string, since time.Time, visit func([]json.RawMessage) error) error {
	p := &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	p.Context = ctx
	p.Limit = stripe.Int64(listPageSize)
	for _, t := range types {
		p.Types = append(p.Types, stripe.String(t))
	}
	for n := 1; ; n++ {
		op := fmt.Sprintf("listing events (page %d)", n)
		if n > maxEventPages {
			return c.wrap(op, "", fmt.Errorf("more than %d pages; refusing to page further", maxEventPages))
		}
		if err := ctx.Err(); err != nil {
			return c.wrap(op, "", err)
		}
		// CallRaw, as stripe-go's own list iterators do: Call cannot
		// encode list parameters.
		query := &form.Values{}
		form.AppendTo(query, p)
		var page eventPage
		if err := c.api.Events.B.CallRaw(http.MethodGet, "/v1/events", c.api.Events.Key, query, p.GetParams(), &page); err != nil {
			return c.wrap(op, "", err)
		}
		if err := visit(page.Data); err != nil {
			return err
		}
		if !page.HasMore {
			return nil
		}
		next, err := lastEventID(page.Data)
		if err != nil {
			return c.wrap(op, "", err)
		}
		if p.StartingAfter != nil && *p.StartingAfter == next {
			return c.wrap(op, "", fmt.Errorf("the page after %s ends with %s again; refusing to page in a circle", next, next))
		}
		p.StartingAfter = stripe.String(next)
	}
}

// lastEventID is the cursor of the page after events.
func lastEventID(events []json.RawMessage) (string, error) {
	if len(events) == 0 {
		return "", errors.New("an empty page says has_more; cannot page further")
	}
	var last struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(events[len(events)-1], &last); err != nil || last.ID == "" {
		return "", errors.New("the page's last event has no id; cannot page further")
	}
	return last.ID, nil
}
