// Package health verifies, periodically rather than per request, the
// credentials the service cannot work without: the Stripe API key and the
// Luarmor API key. A refused key makes the process unready, with the
// reason, and is logged at error level every check while it lasts; webhooks
// are still recorded meanwhile, so nothing is lost while it is fixed.
package health

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"fulfiller/internal/budget"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/stripeapi"
)

// Check intervals: a healthy key is re-checked every okEvery; a refused
// one every failingEvery (each failing check logs at error).
const (
	okEvery      = 5 * time.Minute
	failingEvery = time.Minute
	checkTimeout = 20 * time.Second
)

// StripeKeyChecker is the Stripe read that proves the key.
type StripeKeyChecker interface {
	CheckKey(ctx context.Context) error
}

// LuarmorKeyChecker is the Luarmor read that proves the key (the API key
// details endpoint).
type LuarmorKeyChecker interface {
	KeyDetails(ctx context.Context) (*luarmor.KeyDetails, error)
}

// Credentials checks both keys in the background; Problems reads the
// latest verdict.
type Credentials struct {
	Stripe  StripeKeyChecker
	Luarmor LuarmorKeyChecker
	Logger  *slog.Logger

	mu       sync.Mutex
	problems map[string]string // source → reason, while refused
	checked  chan struct{}     // closed after the first check
	once     sync.Once
}

func (c *Credentials) init() {
	c.once.Do(func() {
		c.problems = map[string]string{}
		c.checked = make(chan struct{})
	})
}

// Run checks at once and then periodically until ctx ends.
func (c *Credentials) Run(ctx context.Context) {
	c.init()
	first := true
	for {
		ok := c.CheckNow(ctx)
		if first {
			close(c.checked)
			first = false
		}
		wait := okEvery
		if !ok {
			wait = failingEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Checked is closed once the first check finished.
func (c *Credentials) Checked() <-chan struct{} {
	c.init()
	return c.checked
}

// CheckNow checks both keys and reports whether neither was refused.
func (c *Credentials) CheckNow(parent context.Context) bool {
	c.init()
	ctx, cancel := context.WithTimeout(parent, checkTimeout)
	defer cancel()
	stripeErr := c.Stripe.CheckKey(ctx)
	var luarmorErr error
	if c.Luarmor != nil {
		_, luarmorErr = c.Luarmor.KeyDetails(budget.WithClass(ctx, budget.ClassMaintenance))
	}
	if parent.Err() != nil {
		return true // stopping: the answers say nothing about the keys
	}
	c.record("stripe", stripeapi.IsUnauthorized(stripeErr), stripeErr,
		"Stripe refused STRIPE_API_KEY: set a secret key, or a restricted key that can read Checkout Sessions, Line Items, Charges and Invoices, of the webhook's account and mode")
	c.record("luarmor", errors.Is(luarmorErr, luarmor.ErrUnauthorized), luarmorErr,
		"Luarmor refused LUARMOR_API_KEY: check the key in the Luarmor dashboard and whitelist this server's IP address")
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.problems) == 0
}

func (c *Credentials) record(source string, refused bool, err error, advice string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var wait *budget.WaitError
	switch {
	case refused:
		c.problems[source] = advice
		c.Logger.Error("credential refused; orders wait until it is fixed (webhooks are still recorded)", "service", source, "error", err)
	case err != nil && !errors.As(err, &wait):
		// Unreachable or failing: not the key's fault, and not a reason
		// to stop taking webhooks. The last verdict stands.
		c.Logger.Warn("credential check could not reach the service; will check again", "service", source, "error", err)
	default:
		if _, was := c.problems[source]; was {
			c.Logger.Info("credential accepted again", "service", source)
		}
		delete(c.problems, source)
	}
}

// Refused reports, by service (stripe, luarmor), whether its key was
// refused at the latest check.
func (c *Credentials) Refused() map[string]bool {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	refused := make(map[string]bool, len(c.problems))
	for s := range c.problems {
		refused[s] = true
	}
	return refused
}

// Problems returns the reasons of the credentials refused at the latest
// check, empty when all are accepted.
func (c *Credentials) Problems() []string {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range []string{"stripe", "luarmor"} {
		if p, ok := c.problems[s]; ok {
			out = append(out, p)
		}
	}
	return out
}
