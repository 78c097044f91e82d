package postgres_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSnapshot returns the CPU time used so far by all processes named
// postgres on this machine (the test server, when it runs here) and by this
// process. Benchmarks report CPU per event with it: unlike wall time, it
// hardly changes when other work shares the machine.
func cpuSnapshot() (pg, self time.Duration) {
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range ents {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(postgres") {
			continue
		}
		fs := strings.Fields(s[i+2:])
		if len(fs) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		pg += time.Duration(u+st) * 10 * time.Millisecond
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return
}

// processCPU returns the CPU time used so far by process pid (0 when it
// cannot be read, e.g. the server runs elsewhere).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	fs := strings.Fields(s[i+2:])
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}
