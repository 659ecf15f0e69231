package app

import (
	"fmt"
	"strings"
)

// maxNamedUnnamed bounds the prices the start-up warning lists.
const maxNamedUnnamed = 10

// warnUnnamedPrices logs, at start-up, the catalog's prices that have no
// name: their buyers see the product name Stripe's line items carry, or
// else the price ID, on the order page and in the emails.
func (m *Main) warnUnnamedPrices() {
	ids := m.Catalog.Unnamed()
	if len(ids) == 0 {
		return
	}
	listed := strings.Join(ids[:min(len(ids), maxNamedUnnamed)], ", ")
	if len(ids) > maxNamedUnnamed {
		listed += fmt.Sprintf(" and %d more", len(ids)-maxNamedUnnamed)
	}
	m.Logger.Warn("catalog prices without a name: their buyers see Stripe's product name, or else the price ID; "+
		"add a name: to each in CATALOG_FILE", "prices", listed, "unnamed", len(ids))
}
