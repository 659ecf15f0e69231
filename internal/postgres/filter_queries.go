package postgres

import (
	"fmt"
	"strconv"
	"strings"
)

// filterQueries is a listing with optional filters written as one query
// text per set of filters present, each registered as a look-up. The
// service's connections plan a statement once for any parameters
// (plan_cache_mode=force_generic_plan, SessionSettings): a single text
// that skips an unset filter with "($2 = 0 OR order_id = $2)" gets one plan
// for every combination, which can use no filter's index and reads a whole
// table backwards for a few rows. A text per set gets a plan for that set.
type filterQueries struct {
	filters []string       // the optional filters' names, in order
	sql     map[int]string // by set of filters (bit i: filters[i])
	fixed   int            // parameters every variant takes, $1 to $fixed
}

// queryFilter is a condition of a listing: its name in the names of the
// look-ups, and its SQL, where an optional filter writes filterParam for
// its value.
type queryFilter struct{ name, cond string }

// filterParam stands for an optional filter's value in its condition;
// newFilterQueries numbers it: after the parameters every variant takes,
// one per filter present, in the filters' order.
const filterParam = "$?"

// FilterLookup describes a look-up registered for one set of a listing's
// optional filters.
type FilterLookup struct {
	Listing string   // the function that runs it: ListAudit, ListOutboundDeliveries
	Filters []string // its optional filters, in the order of their parameters
}

// filterLookups are the look-ups newFilterQueries registered, by name.
var filterLookups = map[string]FilterLookup{}

// FilterLookupOf describes look-up name if a listing with optional filters
// registered it, so the query-plan test can give each variant the
// parameters the service passes it.
func FilterLookupOf(name string) (FilterLookup, bool) {
	l, ok := filterLookups[name]
	return l, ok
}

// Args are the parameters of the look-up: fixed, those every variant
// takes, then the value of each of its filters.
func (l FilterLookup) Args(fixed []any, value func(filter string) any) []any {
	args := append([]any{}, fixed...)
	for _, f := range l.Filters {
		args = append(args, value(f))
	}
	return args
}

// filterListing is a listing's query, with the conditions it always has
// and its optional filters.
type filterListing struct {
	name       string // the function that runs it, which names its look-ups
	selectFrom string // SELECT ... FROM ...
	always     []queryFilter
	// fixedParams: every variant takes these parameters first ($1 to
	// $fixedParams), which always and tail may use.
	fixedParams int
	filters     []queryFilter
	tail        string // ORDER BY ... LIMIT
}

// newFilterQueries registers a look-up of l per subset of its filters,
// named l.name, "/" and the names of l.always and of the subset's filters
// joined by "+" (or "all"): l.selectFrom WHERE the conditions of l.always
// and of the subset, then l.tail.
func newFilterQueries(l filterListing) *filterQueries {
	q := &filterQueries{sql: map[int]string{}, fixed: l.fixedParams}
	for _, f := range l.filters {
		q.filters = append(q.filters, f.name)
	}
	for set := range 1 << len(l.filters) {
		// "true" keeps the WHERE clause whole when no condition is set.
		where, names, present := []string{"true"}, []string{}, []string{}
		for _, c := range l.always {
			where, names = append(where, c.cond), append(names, c.name)
		}
		param := l.fixedParams + 1
		for i, f := range l.filters {
			if set&(1<<i) != 0 {
				where = append(where, strings.ReplaceAll(f.cond, filterParam, "$"+strconv.Itoa(param)))
				names, present = append(names, f.name), append(present, f.name)
				param++
			}
		}
		if len(names) == 0 {
			names = []string{"all"}
		}
		name := l.name + "/" + strings.Join(names, "+")
		filterLookups[name] = FilterLookup{Listing: l.name, Filters: present}
		q.sql[set] = lookup(name, l.selectFrom+`
		WHERE `+strings.Join(where, " AND ")+`
		`+l.tail)
	}
	return q
}

// query returns the variant for the filters set and its parameters: fixed,
// then the value of each filter set. values holds a value per filter, in
// order, nil for one not set (see unlessZero).
func (q *filterQueries) query(fixed []any, values ...any) (string, []any) {
	if len(fixed) != q.fixed || len(values) != len(q.filters) {
		panic(fmt.Sprintf("a listing with %d fixed parameters and filters %v was given %d and %d values",
			q.fixed, q.filters, len(fixed), len(values)))
	}
	set, args := 0, append([]any{}, fixed...)
	for i, v := range values {
		if v != nil {
			set |= 1 << i
			args = append(args, v)
		}
	}
	return q.sql[set], args
}

// unlessZero is v, or nil (a filter not set) for T's zero value.
func unlessZero[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}
