package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, which
// Linux fixes at 100 on every architecture Go supports).
const procTick = 10 * time.Millisecond

// procStat is what the harness reads from one /proc/<pid>/stat line.
type procStat struct {
	comm                         string
	ppid                         int
	utime, stime, cutime, cstime uint64 // in procTick
}

// parseProcStat reads a /proc/<pid>/stat line. The command name sits in
// brackets and may itself hold spaces and brackets, so the fields are
// counted from its last closing bracket.
func parseProcStat(line string) (procStat, bool) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return procStat{}, false
	}
	s := procStat{comm: line[open+1 : end]}
	var err error
	if s.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, false
	}
	for i, dst := range []*uint64{&s.utime, &s.stime, &s.cutime, &s.cstime} {
		if *dst, err = strconv.ParseUint(f[11+i], 10, 64); err != nil {
			return procStat{}, false
		}
	}
	return s, true
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	return parseProcStat(string(b))
}

// postmasterOf is the PostgreSQL server process that started backend, a
// server process's ID (pg_backend_pid()); false when it is not a local
// PostgreSQL process this harness can read, e.g. a server on another
// machine.
func postmasterOf(backend int) (int, bool) {
	b, ok := readProcStat(backend)
	if !ok || !strings.HasPrefix(b.comm, "postgres") {
		return 0, false
	}
	pm, ok := readProcStat(b.ppid)
	if !ok || !strings.HasPrefix(pm.comm, "postgres") {
		return 0, false
	}
	return b.ppid, true
}

// postgresCPU is the CPU time the whole PostgreSQL server of postmaster
// has used: the server process's own, that of its children which have
// ended (the server waits for each, so the kernel adds them to its
// cutime/cstime), and that of its children still running (backends,
// background writer, WAL writer, autovacuum).
func postgresCPU(postmaster int) (time.Duration, bool) {
	pm, ok := readProcStat(postmaster)
	if !ok {
		return 0, false
	}
	ticks := pm.utime + pm.stime + pm.cutime + pm.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == postmaster {
			continue
		}
		if s, ok := readProcStat(pid); ok && s.ppid == postmaster {
			ticks += s.utime + s.stime
		}
	}
	return time.Duration(ticks) * procTick, true
}
