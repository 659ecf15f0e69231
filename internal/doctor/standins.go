package doctor

import (
	"context"
	"net/http"
	"strings"
	"time"

	"fulfiller/internal/config"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/stripeapi"
)

// StandIns names, by base URL, the services that are the local stand-ins
// `fulfiller dev` runs: its Stripe stand-in and its Luarmor sandbox. ""
// is the real service (or one that is not known to be a stand-in).
type StandIns struct {
	Stripe, Luarmor string
}

// standInProbeTimeout bounds the one request that asks a service whether
// it is a stand-in.
const standInProbeTimeout = 5 * time.Second

// FindStandIns finds which of the configured services are the local
// stand-ins of `fulfiller dev`. A service counts as one only when both
// hold: it is configured with the development key `fulfiller dev` gives
// its stand-in (config.DevStripeAPIKey, config.DevLuarmorAPIKey), and its
// base URL answers with the stand-in's own header (StandInHeader of
// stripeapi and luarmor), which neither Stripe nor Luarmor sends. A
// production configuration, whose real keys no stand-in accepts, is never
// taken for a development one, and a development key pointed at the real
// services is not either. Each service asked gets one unauthenticated
// request; nothing is sent to a service with any other key.
func FindStandIns(ctx context.Context, client *http.Client, cfg config.Config) StandIns {
	if client == nil {
		client = &http.Client{Timeout: standInProbeTimeout}
	}
	var s StandIns
	if cfg.StripeAPIKey == config.DevStripeAPIKey && cfg.StripeAPIBase != "" &&
		answersAs(ctx, client, strings.TrimRight(cfg.StripeAPIBase, "/")+"/", stripeapi.StandInHeader, stripeapi.StandInName) {
		s.Stripe = cfg.StripeAPIBase
	}
	// /status is the one Luarmor route outside the request budget.
	if cfg.LuarmorAPIKey == config.DevLuarmorAPIKey &&
		answersAs(ctx, client, strings.TrimRight(cfg.LuarmorBaseURL, "/")+"/status", luarmor.StandInHeader, luarmor.StandInName) {
		s.Luarmor = cfg.LuarmorBaseURL
	}
	return s
}

// answersAs reports whether GET target answers with header set to name,
// whatever its status.
func answersAs(ctx context.Context, client *http.Client, target, header, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, standInProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.Header.Get(header) == name
}

// standIns is the line that says the checks ran against stand-ins, when
// any did.
func (d *Doctor) standIns() (Result, bool) {
	const check = "stand-ins"
	var which, marks []string
	if d.StandIns.Stripe != "" {
		which = append(which, "Stripe is its Stripe stand-in at "+d.StandIns.Stripe)
		marks = append(marks, stripeMark)
	}
	if d.StandIns.Luarmor != "" {
		which = append(which, "Luarmor is its Luarmor sandbox at "+d.StandIns.Luarmor)
		marks = append(marks, luarmorMark)
	}
	if len(which) == 0 {
		return Result{}, false
	}
	return warn(check, "checked against the local stand-ins of `fulfiller dev` (make run), not the real services: %s. The lines marked %s say nothing about real sales: before selling, run doctor with the production settings",
		strings.Join(which, "; "), strings.Join(marks, " or ")), true
}

// The marks of the lines read from a stand-in.
const (
	stripeMark  = "[Stripe stand-in]"
	luarmorMark = "[Luarmor sandbox]"
)

// stripeTag marks r, a check that read Stripe, as read from the stand-in.
func (s StandIns) stripeTag(r Result) Result {
	if s.Stripe != "" {
		r.Message = stripeMark + " " + r.Message
	}
	return r
}

// luarmorTag marks r, a check that read Luarmor, as read from the sandbox.
func (s StandIns) luarmorTag(r Result) Result {
	if s.Luarmor != "" {
		r.Message = luarmorMark + " " + r.Message
	}
	return r
}
