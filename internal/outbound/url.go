package outbound

import (
	"fmt"
	"net/url"

	"fulfiller/internal/mail"
)

// ParseURL checks an endpoint the service posts events to (a webhook of
// OUTBOUND_WEBHOOK_URL, DISCORD_WEBHOOK_URL): absolute, https (http for
// loopback only, as the event may name a buyer), no credentials or
// fragment. The error never repeats the URL, which for Discord holds its
// token.
func ParseURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("must be an absolute https URL such as https://shop.example/hooks/fulfiller, without credentials or fragment")
	}
	if u.Scheme == "http" && !mail.IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("must be https (http only for localhost): events carry order details")
	}
	return u, nil
}
