package doctor_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/doctor"
	"fulfiller/internal/shop"
)

// namedShop is the shop of a configuration that passes every check.
var namedShop = shop.Identity{Name: "Doctor's shop", Support: shop.Contact{Email: "help@shop.example"}}

func TestShopCheckWarnsOfWhatBuyersWouldMiss(t *testing.T) {
	t.Parallel()
	named := &catalog.Catalog{Prices: map[string]catalog.Product{"price_a": {ProjectID: "p", KeyDays: 30, Name: "Pro"}}}
	acme := shop.Identity{Name: "Acme", Support: shop.Contact{Email: "help@acme.example.com"}}
	r := doctor.ShopCheck(acme, named)
	require.Equal(t, doctor.Pass, r.Status, r.Message)
	require.Contains(t, r.Message, "help@acme.example.com")

	old := &catalog.Catalog{Prices: map[string]catalog.Product{"price_a": {ProjectID: "p", KeyDays: 30, Name: "Pro"},
		"price_old": {ProjectID: "p", KeyDays: 30}}}
	r = doctor.ShopCheck(acme, old)
	require.Equal(t, doctor.Pass, r.Status, "Stripe's product name stands in: nothing a sale needs")
	require.Contains(t, r.Message, "no name in the catalog for price_old")
	require.NotContains(t, r.Message, "price_a")

	r = doctor.ShopCheck(shop.Identity{}, named)
	require.Equal(t, doctor.Warn, r.Status)
	require.Contains(t, r.Message, "SHOP_NAME is unset")
	require.Contains(t, r.Message, "SHOP_SUPPORT is unset")
}
