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

	"go.yaml.in/yaml/v3"
)

// Product is what one unit of a price delivers.
type Product struct {
	ProjectID string `yaml:"project_id"`
	// KeyDays is the days a key gets once first used; 0 makes a lifetime key.
	KeyDays int `yaml:"key_days"`
	// MaxQuantity caps the units of this price in one order; 0 = no cap.
	MaxQuantity int `yaml:"max_quantity"`
}

// Catalog is the parsed catalog file. It is safe for concurrent use once
// built: workers look prices up while an operator may add one.
type Catalog struct {
	Prices map[string]Product `yaml:"prices"`

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

// Len is the number of prices.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.Prices)
}

// Load reads and validates a catalog file.
func Load(path string) (*Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w (set CATALOG_FILE to the shop's catalog; see catalog.example.yaml)", path, err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// Parse reads a catalog. Unknown fields are errors, so a typo such as
// "keydays" cannot silently deliver lifetime keys.
func Parse(r io.Reader) (*Catalog, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: it needs a prices: map")
		}
		return nil, err
	}
	if len(c.Prices) == 0 {
		return nil, errors.New("no prices: add at least one entry under the prices key")
	}
	ids := make([]string, 0, len(c.Prices))
	for id := range c.Prices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var problems []string
	for _, id := range ids {
		p := c.Prices[id]
		if strings.TrimSpace(id) == "" {
			problems = append(problems, "a price with an empty ID")
		}
		if p.ProjectID == "" {
			problems = append(problems, fmt.Sprintf("price %s: project_id is required", id))
		}
		if p.KeyDays < 0 {
			problems = append(problems, fmt.Sprintf("price %s: key_days must be 0 (lifetime) or more", id))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &c, nil
}
