package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveMemoryLimit(t *testing.T) {
	noEnv := func(string) string { return "" }
	cgroup := func(t *testing.T, name, content string) string {
		root := t.TempDir()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	cases := []struct {
		name, flag, root string
		env              func(string) string
		want             int64
		wantErr          string
	}{
		{name: "v2 limit", flag: "auto", root: cgroup(t, "memory.max", "1073741824\n"), env: noEnv, want: 966367641},
		{name: "v2 unlimited", flag: "auto", root: cgroup(t, "memory.max", "max\n"), env: noEnv, want: 0},
		{name: "v1 limit", flag: "", root: cgroup(t, "memory/memory.limit_in_bytes", "536870912\n"), env: noEnv, want: 483183820},
		{name: "v1 unlimited", flag: "auto", root: cgroup(t, "memory/memory.limit_in_bytes", "9223372036854771712\n"), env: noEnv, want: 0},
		{name: "no cgroup", flag: "auto", root: t.TempDir(), env: noEnv, want: 0},
		{name: "garbage in the cgroup file", flag: "auto", root: cgroup(t, "memory.max", "lots\n"), env: noEnv, want: 0},
		{name: "explicit", flag: "512Mi", root: cgroup(t, "memory.max", "1073741824\n"), env: noEnv, want: 512 << 20},
		{name: "off", flag: "off", root: cgroup(t, "memory.max", "1073741824\n"), env: noEnv, want: 0},
		{name: "bad size", flag: "lots", root: t.TempDir(), env: noEnv, wantErr: `--memory-limit "lots"`},
		{name: "too small", flag: "1Mi", root: t.TempDir(), env: noEnv, wantErr: "at least 16Mi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := resolveMemoryLimit(c.flag, c.root, c.env)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("resolveMemoryLimit(%q) = %+v, %v; want an error with %q", c.flag, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got.bytes != c.want || got.source == "" {
				t.Fatalf("resolveMemoryLimit(%q) = %+v, %v; want %d bytes and a source", c.flag, got, err, c.want)
			}
		})
	}
	// GOMEMLIMIT wins over the cgroup: auto reports what the runtime applied.
	prev := debug.SetMemoryLimit(300 << 20)
	defer debug.SetMemoryLimit(prev)
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "300MiB"
		}
		return ""
	}
	got, err := resolveMemoryLimit("auto", cgroup(t, "memory.max", "1073741824\n"), env)
	if err != nil || got.bytes != 300<<20 || got.source != "GOMEMLIMIT" {
		t.Fatalf("auto with GOMEMLIMIT = %+v, %v", got, err)
	}
	// GOMEMLIMIT=off is a choice too: no limit, whatever the cgroup says.
	debug.SetMemoryLimit(math.MaxInt64)
	off := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "off"
		}
		return ""
	}
	got, err = resolveMemoryLimit("auto", cgroup(t, "memory.max", "1073741824\n"), off)
	if err != nil || got.bytes != 0 || got.source != "GOMEMLIMIT" {
		t.Fatalf("auto with GOMEMLIMIT=off = %+v, %v; want no limit", got, err)
	}
	// apply: a limit is set; off clears one.
	memoryLimit{bytes: 200 << 20, source: "--memory-limit"}.apply()
	if l := debug.SetMemoryLimit(-1); l != 200<<20 {
		t.Fatalf("after apply the runtime limit is %d", l)
	}
	memoryLimit{source: "off"}.apply()
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("after apply(off) the runtime limit is %d", l)
	}
}

func TestResolveGCPercent(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name, flag string
		want       int
		source     string
		wantErr    string
	}{
		{name: "default", flag: "auto", want: defaultGCPercent, source: "default"},
		{name: "empty is auto", flag: "", want: defaultGCPercent, source: "default"},
		{name: "explicit", flag: "100", want: 100, source: "--gc-percent"},
		{name: "too low", flag: "5", wantErr: `--gc-percent "5"`},
		{name: "too high", flag: "5000", wantErr: "from 10 to 1000"},
		{name: "not a number", flag: "lots", wantErr: `--gc-percent "lots"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := resolveGCPercent(c.flag, noEnv)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("resolveGCPercent(%q) = %v, %v; want an error containing %q", c.flag, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got.percent != c.want || got.source != c.source {
				t.Fatalf("resolveGCPercent(%q) = %+v, %v; want %d from %s", c.flag, got, err, c.want, c.source)
			}
		})
	}
}

// TestResolveGCPercentKeepsGOGC checks that auto keeps what the runtime took
// from GOGC, and that apply then leaves it alone.
func TestResolveGCPercentKeepsGOGC(t *testing.T) {
	prev := debug.SetGCPercent(70) // as if GOGC=70 had been read at start
	defer debug.SetGCPercent(prev)
	env := func(k string) string {
		if k == "GOGC" {
			return "70"
		}
		return ""
	}
	got, err := resolveGCPercent("auto", env)
	if err != nil || got.percent != 70 || got.source != "GOGC" {
		t.Fatalf("resolveGCPercent(auto) with GOGC=70 = %+v, %v; want 70 from GOGC", got, err)
	}
	got.apply()
	if p := debug.SetGCPercent(prev); p != 70 {
		t.Errorf("after apply the GC percent is %d, want GOGC's 70", p)
	}
	debug.SetGCPercent(prev)
	explicit, err := resolveGCPercent("200", env)
	if err != nil {
		t.Fatal(err)
	}
	explicit.apply()
	if p := debug.SetGCPercent(prev); p != 200 {
		t.Errorf("after --gc-percent 200 the GC percent is %d, want 200 (the flag wins over GOGC)", p)
	}
}
