package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fields are counted from the command name's last closing bracket,
// whatever the name holds.
func TestParseProcStatReadsParentAndCPUTimesPastAnyCommandName(t *testing.T) {
	line := "4242 (postgres: a) b (c) S 17 4242 4242 0 -1 4194560 900 0 0 0 120 35 7 3 20 0 1 0 100 1000 200 18446744073709551615\n"
	s, ok := parseProcStat(line)
	require.True(t, ok)
	require.Equal(t, procStat{comm: "postgres: a) b (c", ppid: 17, utime: 120, stime: 35, cutime: 7, cstime: 3}, s)

	_, ok = parseProcStat("4242 (postgres) S 17 4242")
	require.False(t, ok, "a line cut short")
	_, ok = parseProcStat("garbage")
	require.False(t, ok)
}

// This process is no PostgreSQL backend, so its server is not read.
func TestPostmasterOfRefusesAProcessThatIsNotPostgreSQL(t *testing.T) {
	_, ok := postmasterOf(os.Getpid())
	require.False(t, ok)
}
