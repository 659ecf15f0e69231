package doctor

import (
	"fmt"
	"strings"

	"fulfiller/internal/catalog"
	"fulfiller/internal/shop"
)

// ShopCheck reports how buyers will see the shop: WARN when the order page
// and emails cannot name it (SHOP_NAME) or give buyers nobody to ask
// (SHOP_SUPPORT). It lists the catalog's prices without a name, whose
// buyers see the product name Stripe's line items carry (or else the
// price ID): worth a look, but nothing a sale needs, so not a warning.
func ShopCheck(id shop.Identity, c *catalog.Catalog) Result {
	var missing []string
	if id.Name == "" {
		missing = append(missing, "SHOP_NAME is unset: pages and emails speak for \"the shop\" without naming it")
	}
	if id.Support.IsZero() {
		missing = append(missing, "SHOP_SUPPORT is unset: buyers see no address to ask for help")
	}
	note := "every price named"
	if unnamed := c.Unnamed(); len(unnamed) > 0 {
		listed := strings.Join(unnamed[:min(len(unnamed), 10)], ", ")
		if len(unnamed) > 10 {
			listed += fmt.Sprintf(" and %d more", len(unnamed)-10)
		}
		note = fmt.Sprintf("no name in the catalog for %s: its buyers see Stripe's product name, or else the price ID (add name: to each)", listed)
	}
	if len(missing) > 0 {
		return warn("shop", "%s; %s", strings.Join(missing, "; "), note)
	}
	return pass("shop", "buyers see %q, support %s; %s", id.Name, id.Support.Text(), note)
}
