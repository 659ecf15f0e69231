// Package catalog maps Stripe price IDs to what the shop delivers for them:
// a Luarmor project and the days a key gets from its first use.
package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Product is what one unit of a price delivers.
type Product struct {
	ProjectID string
	// KeyDays is the days a key gets once first used; 0 makes a lifetime key.
	KeyDays int
	// MaxQuantity is the most units of the price one order may buy; 0 means
	// no limit.
	MaxQuantity int
	// Billing is how Stripe must bill the price, BillingOneTime or
	// BillingRecurring, checked by `fulfiller doctor`; "" states nothing.
	Billing string
	// Stock is how many unsold keys of the price's (ProjectID, KeyDays) the
	// service keeps made in advance, so a purchase is delivered without a
	// Luarmor call; 0 keeps none. One-off sales only: a subscription's key
	// gets an absolute expiry, not key_days, so it is always made to order.
	Stock int
	// Name is what buyers see the price as, on the order page and in the
	// emails; "" when the catalog names none (see Unnamed).
	Name string
	// Description is a line or two about the product under its name;
	// optional.
	Description string
}

// Billing values: a one-off price, or a subscription's recurring price.
const (
	BillingOneTime   = "one_time"
	BillingRecurring = "recurring"
)

// Limits of the catalog's values.
const (
	// MaxKeyDays is ten years: a larger key_days is a typo, not a product.
	MaxKeyDays = 3650
	// MaxStock bounds a price's stock: at 60 calls a minute, 10,000 keys
	// take about three hours of an idle budget to make.
	MaxStock = 10000
	// maxFileBytes bounds the catalog file; a real one is a few KiB.
	maxFileBytes = 4 << 20
	// MaxNameLength and MaxDescriptionLength bound what a buyer reads of
	// a product, in characters.
	MaxNameLength        = 100
	MaxDescriptionLength = 500
)

// Catalog is the parsed catalog file. It is safe for concurrent use once
// built: workers look prices up while an operator may add one.
type Catalog struct {
	Prices map[string]Product

	mu sync.RWMutex
}

// Lookup returns what a price delivers.
func (c *Catalog) Lookup(priceID string) (Product, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.Prices[priceID]
	return p, ok
}

// Put adds or replaces a price.
func (c *Catalog) Put(priceID string, p Product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Prices == nil {
		c.Prices = map[string]Product{}
	}
	c.Prices[priceID] = p
}

// Stocked returns the IDs of the prices that keep a stock, sorted; none
// for a nil catalog.
func (c *Catalog) Stocked() []string {
	return c.idsWhere(func(p Product) bool { return p.Stock > 0 })
}

// StocksAny reports whether any price keeps a stock; false for a nil
// catalog. It allocates nothing: a create asks it every time.
func (c *Catalog) StocksAny() bool {
	if c == nil {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, p := range c.Prices {
		if p.Stock > 0 {
			return true
		}
	}
	return false
}

// Unnamed returns, sorted, the IDs of the prices without a name: their
// buyers see the product Stripe's line item names, or else the price ID.
// Catalogs written before names keep loading; start-up and doctor warn.
func (c *Catalog) Unnamed() []string {
	return c.idsWhere(func(p Product) bool { return p.Name == "" })
}

// idsWhere returns, sorted, the IDs of the prices for which keep is true;
// none for a nil catalog.
func (c *Catalog) idsWhere(keep func(Product) bool) []string {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	var ids []string
	for id, p := range c.Prices {
		if keep(p) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Len is the number of prices.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.Prices)
}

// Load reads and validates a catalog file.
func Load(path string) (*Catalog, error) {
	f, err := os.Open(path) //nolint:gosec // G304: CATALOG_FILE, set by the operator
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w (set CATALOG_FILE to the shop's catalog; see catalog.example.yaml)", path, err)
	}
	defer func() { _ = f.Close() }() // read only
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// catalogFile is the file's shape. Pointers tell a missing field from an
// explicit zero: key_days: 0 is a lifetime key, a missing key_days is a
// mistake.
type catalogFile struct {
	Prices map[string]*priceEntry `yaml:"prices"`
}

type priceEntry struct {
	ProjectID   *string `yaml:"project_id"`
	KeyDays     *int    `yaml:"key_days"`
	MaxQuantity *int    `yaml:"max_quantity"`
	Billing     *string `yaml:"billing"`
	Stock       *int    `yaml:"stock"`
	Name        *string `yaml:"name"`
	Description *string `yaml:"description"`
}

// Parse reads a catalog and checks every price, reporting every problem at
// once with the price it belongs to. Unknown fields are errors, so a typo
// such as "keydays" cannot silently change what a price delivers. IDs are
// taken as written: an ID with spaces is refused rather than trimmed, since
// it would never match what Stripe sends.
func Parse(r io.Reader) (*Catalog, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes: not a catalog", maxFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f catalogFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: it needs a prices: map")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document (a second ---): put every price under the one prices: map")
	}
	if len(f.Prices) == 0 {
		return nil, errors.New("no prices: add at least one entry under the prices key")
	}
	ids := make([]string, 0, len(f.Prices))
	for id := range f.Prices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	c := &Catalog{Prices: make(map[string]Product, len(f.Prices))}
	var problems []string
	for _, id := range ids {
		p, errs := f.Prices[id].product()
		if problem := checkID(id); problem != "" {
			errs = append(errs, "its ID "+problem)
		}
		for _, e := range errs {
			problems = append(problems, fmt.Sprintf("price %q: %s", id, e))
		}
		c.Prices[id] = p
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

// product checks an entry and returns what it delivers and its problems.
func (e *priceEntry) product() (Product, []string) {
	if e == nil {
		return Product{}, []string{"project_id and key_days are required"}
	}
	var p Product
	var problems []string
	switch {
	case e.ProjectID == nil || *e.ProjectID == "":
		problems = append(problems, "project_id is required")
	default:
		if problem := checkID(*e.ProjectID); problem != "" {
			problems = append(problems, "project_id "+problem)
		}
		p.ProjectID = *e.ProjectID
	}
	switch {
	case e.KeyDays == nil:
		problems = append(problems, "key_days is required (days from first use; 0 for a lifetime key)")
	case *e.KeyDays < 0 || *e.KeyDays > MaxKeyDays:
		problems = append(problems, fmt.Sprintf("key_days must be 0 (lifetime) to %d, not %d", MaxKeyDays, *e.KeyDays))
	default:
		p.KeyDays = *e.KeyDays
	}
	if e.MaxQuantity != nil {
		if *e.MaxQuantity < 1 {
			problems = append(problems, fmt.Sprintf("max_quantity must be 1 or more, not %d (leave it out for no limit)", *e.MaxQuantity))
		}
		p.MaxQuantity = *e.MaxQuantity
	}
	if e.Billing != nil {
		if *e.Billing != BillingOneTime && *e.Billing != BillingRecurring {
			problems = append(problems, fmt.Sprintf("billing must be %s or %s, not %q (leave it out to state nothing)", BillingOneTime, BillingRecurring, *e.Billing))
		}
		p.Billing = *e.Billing
	}
	if e.Stock != nil {
		switch {
		case *e.Stock < 0 || *e.Stock > MaxStock:
			problems = append(problems, fmt.Sprintf("stock must be 0 to %d, not %d", MaxStock, *e.Stock))
		case *e.Stock > 0 && p.Billing == BillingRecurring:
			problems = append(problems, "stock is for one-off prices only: a subscription's key is made with its paid period, so remove stock or billing: recurring")
		}
		p.Stock = *e.Stock
	}
	if e.Name != nil {
		p.Name = strings.TrimSpace(*e.Name)
		if problem := checkText(p.Name, MaxNameLength); problem != "" {
			problems = append(problems, "name "+problem+" (leave it out to show Stripe's product name)")
		}
	}
	if e.Description != nil {
		p.Description = strings.TrimSpace(*e.Description)
		if problem := checkText(p.Description, MaxDescriptionLength); problem != "" {
			problems = append(problems, "description "+problem+" (leave it out for none)")
		}
	}
	return p, problems
}

// checkText describes what is wrong with a name or description a buyer
// reads, or returns "": it is one line of 1 to max characters. Markup is
// not refused: every page and email escapes it.
func checkText(v string, max int) string {
	if n := utf8.RuneCountInString(v); n == 0 || n > max {
		return fmt.Sprintf("must be 1 to %d characters (it has %d)", max, n)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "must be one line of text, without control characters"
	}
	return ""
}

// checkID describes what is wrong with a price or project ID, or returns "".
// Stripe's and Luarmor's IDs never hold spaces or control characters; one
// that does is a copy-paste accident that would never match.
func checkID(id string) string {
	if strings.TrimSpace(id) == "" {
		return "is empty"
	}
	if strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "contains spaces or control characters; write it exactly as the dashboard shows it"
	}
	return ""
}
