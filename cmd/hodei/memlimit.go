package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// The Go runtime lets the heap grow to twice what is live (GOGC=100) no
// matter how close that is to the memory a container may use; a soft memory
// limit makes it collect harder as the heap nears the limit instead. The
// server sets one by default from its cgroup's memory limit, the way
// GOMEMLIMIT would be set by hand.

// memoryLimitShare is the share of a cgroup's memory limit the server's Go
// heap may use by default: the rest is for what the runtime does not count
// (the bbolt map's page cache share, thread stacks, PTY buffers).
const memoryLimitShare = 0.9

// cgroupMemoryFiles are where a process finds its memory limit: cgroup v2,
// then v1. Paths are relative to the cgroup mount, /sys/fs/cgroup.
var cgroupMemoryFiles = []string{"memory.max", "memory/memory.limit_in_bytes"}

// memoryLimit is a resolved --memory-limit: the bytes (0: none) and where
// they came from, for the start-up log.
type memoryLimit struct {
	bytes  int64
	source string
}

// resolveMemoryLimit turns --memory-limit ("auto", "off" or a size) into a
// limit. auto: GOMEMLIMIT when set (the runtime already applied it), else
// memoryLimitShare of the cgroup memory limit under cgroupRoot, else none.
func resolveMemoryLimit(flag, cgroupRoot string, getenv func(string) string) (memoryLimit, error) {
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "off", "none", "0":
		return memoryLimit{source: "off"}, nil
	case "auto", "":
		if getenv("GOMEMLIMIT") != "" {
			// The runtime parsed it at start; read back what it applied
			// (GOMEMLIMIT=off: none, and the cgroup does not override it).
			l := debug.SetMemoryLimit(-1)
			if l == math.MaxInt64 {
				l = 0
			}
			return memoryLimit{bytes: l, source: "GOMEMLIMIT"}, nil
		}
		for _, name := range cgroupMemoryFiles {
			b, err := os.ReadFile(filepath.Join(cgroupRoot, name))
			if err != nil {
				continue
			}
			s := strings.TrimSpace(string(b))
			n, err := strconv.ParseInt(s, 10, 64)
			if s == "max" || err != nil || n <= 0 || n >= math.MaxInt64/2 {
				continue // unlimited (v1 writes a huge number) or unreadable
			}
			return memoryLimit{bytes: int64(float64(n) * memoryLimitShare),
				source: fmt.Sprintf("%.0f%% of the cgroup limit %d", memoryLimitShare*100, n)}, nil
		}
		return memoryLimit{source: "none: no cgroup memory limit"}, nil
	}
	n, err := parseBytes(flag)
	if err != nil {
		return memoryLimit{}, usageError("--memory-limit %q: %v, or auto or off", flag, err)
	}
	if n < 16<<20 {
		return memoryLimit{}, usageError("--memory-limit %q: at least 16Mi", flag)
	}
	return memoryLimit{bytes: n, source: "--memory-limit"}, nil
}

// apply sets the runtime's soft memory limit (none: no limit).
func (m memoryLimit) apply() {
	if m.bytes > 0 {
		debug.SetMemoryLimit(m.bytes)
	} else if m.source == "off" {
		debug.SetMemoryLimit(math.MaxInt64)
	}
}

// defaultGCPercent is the GOGC the server runs with unless GOGC or
// --gc-percent says otherwise. Go's own default, 100, lets the heap grow to
// twice what is live before it collects; 50 lets it grow by half. The
// server's live heap is mostly long-lived read models and the event store's
// index tail, so collecting more often costs CPU in proportion to how fast
// it allocates, and lowers the peak resident set by about a fifth
// (BENCHMARKS.md, "Fifth session").
const defaultGCPercent = 50

// gcPercent is a resolved --gc-percent and where it came from.
type gcPercent struct {
	percent int // -1: GOGC=off
	source  string
}

// resolveGCPercent turns --gc-percent ("auto" or a percentage) into a GC
// percent. auto: GOGC when set (the runtime already applied it, off
// included), else defaultGCPercent.
func resolveGCPercent(flag string, getenv func(string) string) (gcPercent, error) {
	switch s := strings.ToLower(strings.TrimSpace(flag)); s {
	case "auto", "":
		if getenv("GOGC") != "" {
			p := debug.SetGCPercent(100)
			debug.SetGCPercent(p)
			return gcPercent{percent: p, source: "GOGC"}, nil
		}
		return gcPercent{percent: defaultGCPercent, source: "default"}, nil
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 || n > 1000 {
			return gcPercent{}, usageError("--gc-percent %q: want auto or a percentage from 10 to 1000", flag)
		}
		return gcPercent{percent: n, source: "--gc-percent"}, nil
	}
}

// apply sets the runtime's GC percent (GOGC from the environment is already
// in force).
func (g gcPercent) apply() {
	if g.source != "GOGC" {
		debug.SetGCPercent(g.percent)
	}
}
