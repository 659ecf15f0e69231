// Package stripespec checks JSON against Stripe's own OpenAPI spec of API
// version 2023-10-16, the one stripe-mock v0.183.0 carries: test tooling,
// so the project's Stripe stand-in and webhook fixtures cannot drift from
// what Stripe sends.
package stripespec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Version is the stripe-mock whose spec is API version 2023-10-16; make
// test and .ci/run install it with go install, which leaves the spec in
// the module cache.
const Version = "v0.183.0"

// Spec is Stripe's OpenAPI document.
type Spec map[string]any

// Load reads the spec from the module cache. Without it the test is
// skipped, except in CI (CI set), where it fails.
func Load(t testing.TB) Spec {
	t.Helper()
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(cache)), "github.com", "stripe", "stripe-mock@"+Version, "embedded", "openapi", "spec3.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		why := "Stripe's OpenAPI spec is not in the module cache: go install github.com/stripe/stripe-mock@" + Version
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (.ci/run installs it): %v", why, err)
		}
		t.Skip(why)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return spec
}

// Check lists where value does not fit the schema name (a Stripe object
// type such as "charge" or "checkout.session").
func (s Spec) Check(name string, value any) []string {
	schema, ok := s.schemas()[name].(map[string]any)
	if !ok {
		return []string{"Stripe's spec has no object " + name}
	}
	return conform(s, schema, value, name)
}

func (s Spec) schemas() map[string]any {
	return s["components"].(map[string]any)["schemas"].(map[string]any)
}

// conform lists where value does not fit schema: a field Stripe does not
// send, or one of another type. Fields Stripe sends that the stand-in
// leaves out are fine (the service reads only some); a field the stand-in
// has must be one Stripe has, with Stripe's type, all the way down.
func conform(spec Spec, schema map[string]any, value any, path string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		return conform(spec, spec.schemas()[name].(map[string]any), value, path)
	}
	if value == nil {
		if n, _ := schema["nullable"].(bool); n {
			return nil
		}
		return []string{path + ": null, which Stripe never sends here"}
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := schema[key].([]any); ok {
			var best []string
			for _, alt := range alts {
				problems := conform(spec, alt.(map[string]any), value, path)
				if len(problems) == 0 {
					return nil
				}
				if best == nil || len(problems) < len(best) {
					best = problems
				}
			}
			if n, _ := schema["nullable"].(bool); n && value == nil {
				return nil
			}
			return best
		}
	}
	typ, _ := schema["type"].(string)
	switch v := value.(type) {
	case map[string]any:
		if typ != "" && typ != "object" {
			return []string{fmt.Sprintf("%s: an object where Stripe sends %s", path, typ)}
		}
		props, _ := schema["properties"].(map[string]any)
		extra, _ := schema["additionalProperties"].(map[string]any)
		var problems []string
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := props[k].(map[string]any)
			switch {
			case ok:
				problems = append(problems, conform(spec, ps, v[k], path+"."+k)...)
			case extra != nil:
				problems = append(problems, conform(spec, extra, v[k], path+"."+k)...)
			case props == nil:
			default:
				problems = append(problems, path+"."+k+": a field Stripe does not send")
			}
		}
		return problems
	case []any:
		if typ != "array" {
			return []string{fmt.Sprintf("%s: an array where Stripe sends %s", path, typ)}
		}
		items, _ := schema["items"].(map[string]any)
		var problems []string
		for i, it := range v {
			problems = append(problems, conform(spec, items, it, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return problems
	case string:
		if typ != "string" {
			return []string{fmt.Sprintf("%s: a string where Stripe sends %s", path, typ)}
		}
		if enum, ok := schema["enum"].([]any); ok {
			for _, e := range enum {
				if e == v {
					return nil
				}
			}
			return []string{fmt.Sprintf("%s: %q is not one of Stripe's values %v", path, v, enum)}
		}
	case float64:
		if typ != "integer" && typ != "number" {
			return []string{fmt.Sprintf("%s: a number where Stripe sends %s", path, typ)}
		}
		if typ == "integer" && v != float64(int64(v)) {
			return []string{fmt.Sprintf("%s: %v where Stripe sends an integer", path, v)}
		}
	case bool:
		if typ != "boolean" {
			return []string{fmt.Sprintf("%s: a boolean where Stripe sends %s", path, typ)}
		}
	}
	return nil
}
