package config

import "fulfiller/internal/shop"

// shop reads the shop's identity as buyers see it on the order page and
// in the emails: SHOP_NAME, SHOP_URL, SHOP_SUPPORT, SHOP_LOGO_URL and
// SHOP_ACCENT_COLOR, each optional, each problem added to errs. Left unset
// (or refused), pages and emails speak for "the shop" without naming it
// or a contact.
func (c *Config) shop(get func(name, def string) string, errs *Errors) {
	var err error
	if v := get("SHOP_NAME", ""); v != "" {
		if c.Shop.Name, err = shop.ParseName(v); err != nil {
			errs.add(&Error{"SHOP_NAME", err.Error()})
		}
	}
	if v := get("SHOP_URL", ""); v != "" {
		if c.Shop.URL, err = shop.ParseURL(v); err != nil {
			errs.add(&Error{"SHOP_URL", err.Error()})
		}
	}
	if v := get("SHOP_SUPPORT", ""); v != "" {
		if c.Shop.Support, err = shop.ParseSupport(v); err != nil {
			errs.add(&Error{"SHOP_SUPPORT", err.Error()})
		}
	}
	if v := get("SHOP_LOGO_URL", ""); v != "" {
		if c.Shop.LogoURL, err = shop.ParseLogoURL(v); err != nil {
			errs.add(&Error{"SHOP_LOGO_URL", err.Error()})
		}
	}
	if v := get("SHOP_ACCENT_COLOR", ""); v != "" {
		if c.Shop.AccentColor, err = shop.ParseAccentColor(v); err != nil {
			errs.add(&Error{"SHOP_ACCENT_COLOR", err.Error()})
		}
	}
}
