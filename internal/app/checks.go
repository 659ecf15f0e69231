package app

import (
	"cmp"
	"context"
	"net/http"

	"fulfiller/internal/budget"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/stripeapi"
)

// consoleChecks runs doctor's checks for the console with the service's
// own clients: its Luarmor reads take slots of the fleet's budget (class
// maintenance) like every other Luarmor call, and its settings are the
// ones it started with (all valid, or it would not have started).
func (m *Main) consoleChecks(stripeClient *stripeapi.Client, luarmorClient *budget.Client, httpClient *http.Client) *doctor.Checks {
	return &doctor.Checks{New: func(ctx context.Context) *doctor.Doctor {
		return &doctor.Doctor{
			Pool: m.Pool, Stripe: stripeClient, Luarmor: luarmorClient, Catalog: m.Catalog,
			StandIns:       doctor.FindStandIns(ctx, httpClient, m.Config),
			StripeLive:     jobs.LiveKey(m.Config.StripeAPIKey),
			StripeKeyKnown: doctor.StripeKeyNamesMode(m.Config.StripeAPIKey),
			WebhookSecrets: m.Config.WebhookSecrets,
			PublicBaseURL:  cmp.Or(m.Config.PublicBaseURL, m.Config.Mail.PublicBaseURL),
			HTTP:           httpClient,
			Shop:           m.Config.Shop,
			Outbound:       m.Config.Outbound,
		}
	}}
}
