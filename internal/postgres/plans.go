package postgres

import "github.com/jackc/pgx/v5"

// SessionSettings are the settings the service's connections run with,
// for a workload of many small statements on a server it shares with the
// service itself:
//
//   - plan_cache_mode=force_generic_plan: every statement is prepared once
//     per connection (pgx's statement cache) and runs its generic plan,
//     planned once, from its first execution. PostgreSQL's default plans
//     each of a connection's first five executions of a statement for
//     their values; on fresh connections (after a quiet spell, or a
//     restart) a sales spike's every statement was planned anew, a third
//     of PostgreSQL's CPU per purchase in the burst benchmark.
//   - jit=off: a generic plan's cost is estimated without the values, and
//     an estimate past jit_above_cost compiled a look-up of ten rows for
//     8 ms instead of running it in 0.2 ms.
//   - max_parallel_workers_per_gather=0: the same estimates started
//     parallel workers, a process each, to count a day of orders (100 ms
//     instead of 0.3 ms); the service's statements each read a few rows.
//
// A generic plan cannot use what a value would tell the planner: a partial
// index whose predicate a parameter would have to match, or how many rows
// a range of a parameter holds. Where a fixed value (a status, a job kind)
// decides which index serves a query, it is written in the SQL text; a
// count since a moment is bounded on both sides (… AND at <= now()), which
// the planner estimates as a narrow range. The plan test
// (TestLookupsReadIndexes) checks the generic plan of every look-up and
// periodic query, as the service runs them, and the scale benchmark times
// them at a million orders.
var SessionSettings = map[string]string{
	"plan_cache_mode":                 "force_generic_plan",
	"jit":                             "off",
	"max_parallel_workers_per_gather": "0",
}

// ConfigureSession sets SessionSettings on cfg, except those the
// connection string sets itself.
func ConfigureSession(cfg *pgx.ConnConfig) {
	for name, value := range SessionSettings {
		if _, chosen := cfg.RuntimeParams[name]; !chosen {
			cfg.RuntimeParams[name] = value
		}
	}
}
