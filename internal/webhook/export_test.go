package webhook

// What the internal tests' helpers (helpers_test.go) lend the external
// tests, which cannot see them otherwise.

// PoisonCase is a signed body that once failed every event recorded with it.
type PoisonCase = poisonCase

var (
	// PoisonCases are the hostile bodies: see poisonCases.
	PoisonCases = poisonCases
	// RefuseAtDatabase makes PostgreSQL refuse events of cs_test_refused
	// objects: see refuseAtDatabase.
	RefuseAtDatabase = refuseAtDatabase
)
