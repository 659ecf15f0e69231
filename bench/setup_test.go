package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/testdb"
)

// benchBundle is a scenario test's databases: a migrated template to clone
// a fresh database from for each run, all dropped when the test ends.
type benchBundle struct {
	dbs  *databases
	tmpl string
}

func setupBench(t *testing.T) benchBundle {
	t.Helper()
	testdb.ServerURL(t) // fails with what to do when DATABASE_URL is unset
	dbs, err := newDatabases()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dbs.dropAll()) })
	tmpl, err := dbs.migratedTemplate(context.Background())
	require.NoError(t, err)
	return benchBundle{dbs: dbs, tmpl: tmpl}
}
