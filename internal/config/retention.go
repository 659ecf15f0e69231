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
	const day = 24 * time.Hour
	c.Retention = retention.Settings{}.WithDefaults()
	if v := get("RETENTION_EVENT_PAYLOAD_DAYS", ""); v != "" {
		least := retention.MinEventPayloadAge(c.ReconcileLookback)
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 1 || n > maxRetentionDays:
			errs.add(&Error{"RETENTION_EVENT_PAYLOAD_DAYS", fmt.Sprintf("%q must be a whole number of days from %d to %d", v, least/day, maxRetentionDays)})
		case time.Duration(n)*day < least:
			errs.add(&Error{"RETENTION_EVENT_PAYLOAD_DAYS", fmt.Sprintf(
				"%q is shorter than reconciliation needs: RECONCILE_LOOKBACK (%s) and Stripe's 3 days of retries may still send an event that old again; keep at least %d days",
				v, c.ReconcileLookback, least/day)})
		default:
			c.Retention.EventPayloadAge = time.Duration(n) * day
		}
	}
	if v := get("RETENTION_EVENT_ID_DAYS", ""); v != "" {
		least := c.Retention.EventPayloadAge
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 1 || n > maxRetentionDays:
			errs.add(&Error{"RETENTION_EVENT_ID_DAYS", fmt.Sprintf("%q must be a whole number of days from %d to %d", v, least/day, maxRetentionDays)})
		case time.Duration(n)*day < least:
			errs.add(&Error{"RETENTION_EVENT_ID_DAYS", fmt.Sprintf(
				"%q is shorter than RETENTION_EVENT_PAYLOAD_DAYS (%d): an event's ID is kept at least as long as its body; keep at least %d days",
				v, least/day, least/day)})
		default:
			c.Retention.EventIDAge = time.Duration(n) * day
		}
	} else {
		c.Retention.EventIDAge = max(retention.DefaultEventIDAge, c.Retention.EventPayloadAge)
	}
	retentionDays("RETENTION_DELIVERY_LOG_DAYS", get("RETENTION_DELIVERY_LOG_DAYS", ""), errs, &c.Retention.DeliveryLogAge)
	retentionDays("RETENTION_CALL_LOG_DAYS", get("RETENTION_CALL_LOG_DAYS", ""), errs, &c.Retention.CallLogAge)
}

// retentionDays reads the setting name's value v, a whole number of days,
// into age when it is set.
func retentionDays(name, v string, errs *Errors, age *time.Duration) {
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxRetentionDays {
		errs.add(&Error{name, fmt.Sprintf("%q must be a whole number of days from 1 to %d", v, maxRetentionDays)})
		return
	}
	*age = time.Duration(n) * 24 * time.Hour
}
