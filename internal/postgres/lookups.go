package postgres

import "slices"

// Lookup is a query the service runs on a look-up path (a person or a job
// finding rows by what names them: a reference, a key, an address) or on a
// periodic one (a sweep every minute, a check): its plan must read an
// index, never the whole of a table that grows with every order. Each is
// registered where it is defined, so the query-plan test (lookups_test.go)
// EXPLAINs the very text the service runs against a seeded history.
type Lookup struct {
	Name string // the function that runs it, and which of its queries
	SQL  string
}

var lookups []Lookup

// lookup registers sql as the look-up name and returns it unchanged.
func lookup(name, sql string) string {
	lookups = append(lookups, Lookup{Name: name, SQL: sql})
	return sql
}

// Lookups lists every registered look-up.
func Lookups() []Lookup { return slices.Clone(lookups) }
