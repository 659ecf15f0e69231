package config

import (
	"fmt"
	"strconv"
	"time"

	"fulfiller/internal/retention"
)

// maxRetentionDays bounds the retention settings: ten years.
const maxRetentionDays = 3650

// retention reads RETENTION_EVENT_PAYLOAD_DAYS, RETENTION_EVENT_ID_DAYS,
// RETENTION_DELIVERY_LOG_DAYS and RETENTION_CALL_LOG_DAYS, after
// RECONCILE_LOOKBACK: event bodies are kept at least as long as
// reconciliation and Stripe's retries may send an event again, and their
// IDs at least as long as their bodies.
func (c *Config) retention(get func(name, def string) string, errs *Errors) {
	c.Retention = retention.Settings{}.WithDefaults()
	retentionDaysAtLeast("RETENTION_EVENT_PAYLOAD_DAYS", get("RETENTION_EVENT_PAYLOAD_DAYS", ""),
		retention.MinEventPayloadAge(c.ReconcileLookback), func(v string, least int) string {
			return fmt.Sprintf("%q is shorter than reconciliation needs: RECONCILE_LOOKBACK (%s) and Stripe's 3 days of retries may still send an event that old again; keep at least %d days",
				v, c.ReconcileLookback, least)
		}, errs, &c.Retention.EventPayloadAge)
	c.Retention.EventIDAge = max(retention.DefaultEventIDAge, c.Retention.EventPayloadAge)
	retentionDaysAtLeast("RETENTION_EVENT_ID_DAYS", get("RETENTION_EVENT_ID_DAYS", ""),
		c.Retention.EventPayloadAge, func(v string, least int) string {
			return fmt.Sprintf("%q is shorter than RETENTION_EVENT_PAYLOAD_DAYS (%d): an event's ID is kept at least as long as its body; keep at least %d days",
				v, least, least)
		}, errs, &c.Retention.EventIDAge)
	retentionDays("RETENTION_DELIVERY_LOG_DAYS", get("RETENTION_DELIVERY_LOG_DAYS", ""), errs, &c.Retention.DeliveryLogAge)
	retentionDays("RETENTION_CALL_LOG_DAYS", get("RETENTION_CALL_LOG_DAYS", ""), errs, &c.Retention.CallLogAge)
}

// retentionDaysAtLeast is retentionDays refusing fewer days than least,
// with tooShort's words (given v and least in days).
func retentionDaysAtLeast(name, v string, least time.Duration, tooShort func(v string, leastDays int) string, errs *Errors, age *time.Duration) {
	const day = 24 * time.Hour
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil || n < 1 || n > maxRetentionDays:
		errs.add(&Error{name, fmt.Sprintf("%q must be a whole number of days from %d to %d", v, least/day, maxRetentionDays)})
	case time.Duration(n)*day < least:
		errs.add(&Error{name, tooShort(v, int(least/day))})
	default:
		*age = time.Duration(n) * day
	}
}

// retentionDays reads the setting name's value v, a whole number of days,
// into age when it is set.
func retentionDays(name, v string, errs *Errors, age *time.Duration) {
	retentionDaysAtLeast(name, v, 24*time.Hour, nil, errs, age)
}
