package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sampleCPU reads the machine's CPU counters (/proc/stat, all cores, every
// process: the service, the load generator and PostgreSQL alike) and this
// process's own CPU time.
func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s
	}
	defer func() { _ = f.Close() }() // read only
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return s
	}
	// After "cpu", the first eight fields are user nice system idle iowait
	// irq softirq steal (the guest fields after them are already part of
	// user and nice). Idle and iowait are idle time; steal is time the
	// hypervisor gave to other machines, kept apart because it is not this
	// machine's work but still slows it.
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return s
	}
	for i, v := range fields[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s
		}
		s.total += n
		switch i {
		case 3, 4: // idle
		case 7:
			s.steal += n
		default:
			s.busy += n
		}
	}
	s.machine = true
	return s
}
