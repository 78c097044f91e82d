package agent

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"
	"github.com/shirou/gopsutil/v3/process"
)

// Telemetry is one sample of real resource use, sent in heartbeats.
type Telemetry struct {
	CPUPercent     float64 // host, all CPUs, since the previous sample
	MemUsedBytes   uint64  // host
	MemTotalBytes  uint64  // host
	ProcCPUPercent float64 // the agent process
	ProcRSSBytes   uint64  // the agent process
}

// Sampler measures Telemetry. Sample is called from one goroutine at a time.
type Sampler interface {
	Sample() (Telemetry, error)
}

// HostSampler samples the host and the agent process with gopsutil.
type HostSampler struct {
	proc *process.Process
}

// NewHostSampler returns a HostSampler, primed so the first Sample reports CPU
// use since its creation.
func NewHostSampler() *HostSampler {
	s := &HostSampler{}
	if p, err := process.NewProcess(int32(os.Getpid())); err == nil {
		s.proc = p
		_, _ = p.Percent(0)
	}
	_, _ = cpu.Percent(0, false)
	return s
}

// Sample implements Sampler.
func (s *HostSampler) Sample() (Telemetry, error) {
	var t Telemetry
	if v, err := cpu.Percent(0, false); err == nil && len(v) > 0 {
		t.CPUPercent = v[0]
	}
	vm, err := mem.VirtualMemory()
	if err == nil {
		t.MemUsedBytes, t.MemTotalBytes = vm.Used, vm.Total
	}
	if s.proc != nil {
		if v, err := s.proc.Percent(0); err == nil {
			t.ProcCPUPercent = v
		}
		if mi, err := s.proc.MemoryInfo(); err == nil {
			t.ProcRSSBytes = mi.RSS
		}
	}
	return t, err
}

// DetectCapacity returns the CPU (millicores) and memory (bytes) this agent
// can offer: the host's, lowered to a cgroup v2 limit when one is set (as in a
// container or pod).
func DetectCapacity() (cpuMillis, memBytes uint64) {
	n, err := cpu.Counts(true)
	if err != nil || n <= 0 {
		n = runtime.NumCPU()
	}
	cpuMillis = uint64(n) * 1000
	if vm, err := mem.VirtualMemory(); err == nil {
		memBytes = vm.Total
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/cpu.max"); err == nil {
		// "max 100000" or "QUOTA PERIOD" in microseconds.
		f := strings.Fields(string(b))
		if len(f) == 2 && f[0] != "max" {
			q, err1 := strconv.ParseUint(f[0], 10, 64)
			p, err2 := strconv.ParseUint(f[1], 10, 64)
			if err1 == nil && err2 == nil && p > 0 && q*1000/p > 0 {
				cpuMillis = min(cpuMillis, q*1000/p)
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			memBytes = min(memBytes, v)
		}
	}
	return cpuMillis, memBytes
}
