//go:build !linux

package main

import "time"

// Outside Linux the PostgreSQL server's CPU time is not read: the report
// shows it as not measured.
func postmasterOf(int) (int, bool) { return 0, false }

func postgresCPU(int) (time.Duration, bool) { return 0, false }
