package budget

import (
	"context"

	"fulfiller/internal/luarmor"
)

// Client is a Luarmor client whose every request first takes a slot of the
// fleet-wide budget, in the class of its context (WithClass).
type Client struct {
	Luarmor *luarmor.Client
	Budget  *Budget
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

func spend[T any](ctx context.Context, b *Budget, f func(context.Context) (T, error)) (T, error) {
	var zero T
	slot, err := b.Acquire(ctx)
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
	v, err := f(ctx)
	slot.Done(ctx, err)
	return v, err
}

func spendErr(ctx context.Context, b *Budget, f func(context.Context) error) error {
	_, err := spend(ctx, b, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func (c *Client) CreateUser(ctx context.Context, projectID string, req luarmor.CreateUserRequest) (string, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) (string, error) { return c.Luarmor.CreateUser(ctx, projectID, req) })
}

func (c *Client) ListUsers(ctx context.Context, projectID string, opts luarmor.ListUsersOptions) ([]luarmor.User, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) ([]luarmor.User, error) { return c.Luarmor.ListUsers(ctx, projectID, opts) })
}

func (c *Client) GetUser(ctx context.Context, projectID, userKey string) (*luarmor.User, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) (*luarmor.User, error) { return c.Luarmor.GetUser(ctx, projectID, userKey) })
}

func (c *Client) UpdateUser(ctx context.Context, projectID string, req luarmor.UpdateUserRequest) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.UpdateUser(ctx, projectID, req) })
}

func (c *Client) DeleteUser(ctx context.Context, projectID, userKey string) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.DeleteUser(ctx, projectID, userKey) })
}

func (c *Client) Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.Blacklist(ctx, projectID, req) })
}

func (c *Client) Unban(ctx context.Context, projectID, unbanToken string) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.Unban(ctx, projectID, unbanToken) })
}

func (c *Client) ResetHWID(ctx context.Context, projectID string, req luarmor.ResetHWIDRequest) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.ResetHWID(ctx, projectID, req) })
}

func (c *Client) LinkDiscord(ctx context.Context, projectID string, req luarmor.LinkDiscordRequest) error {
	return spendErr(ctx, c.Budget, func(ctx context.Context) error { return c.Luarmor.LinkDiscord(ctx, projectID, req) })
}

func (c *Client) KeyDetails(ctx context.Context) (*luarmor.KeyDetails, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) (*luarmor.KeyDetails, error) { return c.Luarmor.KeyDetails(ctx) })
}

func (c *Client) Status(ctx context.Context) (*luarmor.Status, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) (*luarmor.Status, error) { return c.Luarmor.Status(ctx) })
}

func (c *Client) KeyStats(ctx context.Context, noUsers bool) (*luarmor.KeyStats, error) {
	return spend(ctx, c.Budget, func(ctx context.Context) (*luarmor.KeyStats, error) { return c.Luarmor.KeyStats(ctx, noUsers) })
}
