package config

import (
	"fmt"
	"strconv"

	"fulfiller/internal/mail"
)

// DefaultExpiryNoticeDays is MAIL_EXPIRY_NOTICE_DAYS's default.
const DefaultExpiryNoticeDays = 3

// lifecycleMail reads which emails the shop sends: MAIL_DISABLE, the kinds
// turned off (an unknown name is refused by name, so a typo never leaves
// an email on), and MAIL_EXPIRY_NOTICE_DAYS, how many days ahead a key
// that will not renew is announced (0 is off). Both are read, and
// checked, with mail off too. It runs after mail, whose settings it
// completes.
func (c *Config) lifecycleMail(get func(name, def string) string, errs *Errors) {
	if v := get("MAIL_DISABLE", ""); v != "" {
		disabled, err := mail.ParseKinds(v)
		if err != nil {
			errs.add(&Error{"MAIL_DISABLE", err.Error()})
		}
		c.Mail.Disabled = disabled
	}
	c.Mail.ExpiryNoticeDays = DefaultExpiryNoticeDays
	if v := get("MAIL_EXPIRY_NOTICE_DAYS", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > mail.MaxExpiryNoticeDays {
			errs.add(&Error{"MAIL_EXPIRY_NOTICE_DAYS", fmt.Sprintf("%q must be a whole number of days from 0 (off) to %d", v, mail.MaxExpiryNoticeDays)})
			return
		}
		c.Mail.ExpiryNoticeDays = n
	}
}
