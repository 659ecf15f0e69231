package budget

import (
	"context"
	"time"

	"fulfiller/internal/luarmor"
)

// Client is a Luarmor client whose every request first takes a slot of the
// fleet-wide budget, in the class of its context (WithClass), and, with
// Calls set, is recorded in the call log once its slot is freed.
type Client struct {
	Luarmor *luarmor.Client
	Budget  *Budget
	// Calls records the requests made for an order or a key; nil records
	// none.
	Calls *CallLog
}

type beforeSendKey struct{}

// WithBeforeSend makes the requests sent with ctx run fn once their slot is
// granted, right before they are sent; a request whose fn fails is not
// sent. Jobs use it to renew a lease at the last moment, so the lease only
// has to outlive the request itself, not the wait for its slot.
func WithBeforeSend(ctx context.Context, fn func(context.Context) error) context.Context {
	return context.WithValue(ctx, beforeSendKey{}, fn)
}

// NotSentError wraps the failure of a WithBeforeSend function: the request
// was not sent.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return "luarmor request not sent: " + e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// spend sends f's request with a slot of c's budget. keyOf names the key
// the request was about once its answer is known (a create learns its key
// from the answer); nil when it names none.
func spend[T any](ctx context.Context, c *Client, projectID string, keyOf func(T) string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	slot, err := c.Budget.Acquire(ctx)
	if err != nil {
		return zero, err
	}
	if before, ok := ctx.Value(beforeSendKey{}).(func(context.Context) error); ok {
		if err := before(ctx); err != nil {
			err = &NotSentError{Err: err}
			slot.Done(ctx, err)
			return zero, err
		}
	}
	if c.Calls == nil {
		v, err := f(ctx)
		slot.Done(ctx, err)
		return v, err
	}
	endpoint, status := "", 0
	sentAt := time.Now()
	v, err := f(luarmor.WithAnswerObserver(ctx, func(e string, s int) { endpoint, status = e, s }))
	took := time.Since(sentAt)
	slot.Done(ctx, err)
	if endpoint != "" { // the request was attempted, not refused before it was built
		target := callTarget{projectID: projectID}
		if keyOf != nil {
			target.userKey = keyOf(v)
		}
		c.Calls.record(ctx, target, endpoint, status, sentAt, took, err)
	}
	return v, err
}

func spendErr(ctx context.Context, c *Client, projectID, userKey string, f func(context.Context) error) error {
	_, err := spend(ctx, c, projectID, about[struct{}](userKey), func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// about names userKey as the key of a request whatever its answer.
func about[T any](userKey string) func(T) string {
	return func(T) string { return userKey }
}

func (c *Client) CreateUser(ctx context.Context, projectID string, req luarmor.CreateUserRequest) (string, error) {
	return spend(ctx, c, projectID, func(key string) string { return key },
		func(ctx context.Context) (string, error) { return c.Luarmor.CreateUser(ctx, projectID, req) })
}

func (c *Client) ListUsers(ctx context.Context, projectID string, opts luarmor.ListUsersOptions) ([]luarmor.User, error) {
	return spend(ctx, c, projectID, about[[]luarmor.User](opts.UserKey),
		func(ctx context.Context) ([]luarmor.User, error) { return c.Luarmor.ListUsers(ctx, projectID, opts) })
}

func (c *Client) GetUser(ctx context.Context, projectID, userKey string) (*luarmor.User, error) {
	return spend(ctx, c, projectID, about[*luarmor.User](userKey),
		func(ctx context.Context) (*luarmor.User, error) { return c.Luarmor.GetUser(ctx, projectID, userKey) })
}

func (c *Client) UpdateUser(ctx context.Context, projectID string, req luarmor.UpdateUserRequest) error {
	return spendErr(ctx, c, projectID, req.UserKey, func(ctx context.Context) error { return c.Luarmor.UpdateUser(ctx, projectID, req) })
}

func (c *Client) DeleteUser(ctx context.Context, projectID, userKey string) error {
	return spendErr(ctx, c, projectID, userKey, func(ctx context.Context) error { return c.Luarmor.DeleteUser(ctx, projectID, userKey) })
}

func (c *Client) Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error {
	return spendErr(ctx, c, projectID, req.UserKey, func(ctx context.Context) error { return c.Luarmor.Blacklist(ctx, projectID, req) })
}

// Unban names no key: Luarmor takes the ban's token instead, so the
// request is recorded for its caller's order only.
func (c *Client) Unban(ctx context.Context, projectID, unbanToken string) error {
	return spendErr(ctx, c, projectID, "", func(ctx context.Context) error { return c.Luarmor.Unban(ctx, projectID, unbanToken) })
}

func (c *Client) ResetHWID(ctx context.Context, projectID string, req luarmor.ResetHWIDRequest) error {
	return spendErr(ctx, c, projectID, req.UserKey, func(ctx context.Context) error { return c.Luarmor.ResetHWID(ctx, projectID, req) })
}

func (c *Client) LinkDiscord(ctx context.Context, projectID string, req luarmor.LinkDiscordRequest) error {
	return spendErr(ctx, c, projectID, req.UserKey, func(ctx context.Context) error { return c.Luarmor.LinkDiscord(ctx, projectID, req) })
}

// KeyDetails is about the API key, no order's: it is never recorded.
func (c *Client) KeyDetails(ctx context.Context) (*luarmor.KeyDetails, error) {
	return spend(ctx, c, "", nil, func(ctx context.Context) (*luarmor.KeyDetails, error) { return c.Luarmor.KeyDetails(ctx) })
}

// Status and KeyStats are about the API key, no order's: never recorded.
func (c *Client) Status(ctx context.Context) (*luarmor.Status, error) {
	return spend(ctx, c, "", nil, func(ctx context.Context) (*luarmor.Status, error) { return c.Luarmor.Status(ctx) })
}

func (c *Client) KeyStats(ctx context.Context, noUsers bool) (*luarmor.KeyStats, error) {
	return spend(ctx, c, "", nil, func(ctx context.Context) (*luarmor.KeyStats, error) { return c.Luarmor.KeyStats(ctx, noUsers) })
}
