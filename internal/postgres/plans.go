package postgres

import "github.com/jackc/pgx/v5"

// PlanCacheMode is the plan_cache_mode the service's connections run
// with: every statement is prepared once per connection (pgx's statement
// cache) and runs its generic plan, planned once, from its first
// execution. PostgreSQL's default plans each of a connection's first five
// executions of a statement for their parameters; with a pool of fresh
// connections (after a quiet spell, or a restart) a sales spike's every
// statement was planned anew, a third of PostgreSQL's CPU per purchase.
//
// A generic plan cannot use what a parameter's value would tell the
// planner: a partial index whose predicate a parameter would have to
// match, or a skewed column compared with a parameter. Where a fixed value
// (a status, a job kind) decides which index serves a query, it is written
// in the SQL text, and the plan test (TestLookupsReadIndexes) checks the
// generic plan of every look-up and periodic query, as the service runs
// them.
const PlanCacheMode = "force_generic_plan"

// UseGenericPlans sets PlanCacheMode on cfg, unless the connection string
// chose a plan_cache_mode of its own.
func UseGenericPlans(cfg *pgx.ConnConfig) {
	if _, chosen := cfg.RuntimeParams["plan_cache_mode"]; !chosen {
		cfg.RuntimeParams["plan_cache_mode"] = PlanCacheMode
	}
}
