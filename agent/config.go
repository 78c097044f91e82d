package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// Version is the agent's version, reported in Hello. Set at link time with
// -ldflags "-X github.com/hodei-jobs/hodei/agent.Version=...".
var Version = "dev"

// Defaults.
const (
	DefaultCancelGrace      = 10 * time.Second
	DefaultMaxLogChunk      = 64 << 10
	DefaultMaxInflightLog   = 256 << 10
	smallChunk              = 8 << 10
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultStopTimeout      = 5 * time.Second
	defaultHeartbeat        = 5 * time.Second
	minHeartbeat            = 10 * time.Millisecond
	readerDrainTimeout      = 2 * time.Second
	goodbyeTimeout          = 2 * time.Second
)

// Config configures an Agent. Server (or Dialer) and WorkDir are required.
type Config struct {
	Server  string      // HWP address, host:port (used when Dialer is nil)
	TLS     *tls.Config // nil: plaintext
	Token   string      // join token
	Name    string      // default: the host name
	Labels  map[string]string
	Slots   int    // concurrent jobs; default: the number of CPUs
	WorkDir string // spools under WorkDir/spool, job dirs under WorkDir/jobs

	// Shell runs each script as Shell + [script]; default /bin/sh -c.
	Shell []string
	// Env is the base environment of every job. nil means a small allowlist
	// taken from the agent's own environment (PATH, HOME, LANG, ...): the
	// agent's token and other variables never reach jobs.
	Env []string
	// CancelGrace is the SIGTERM -> SIGKILL delay when the assignment gives
	// none; default 10s.
	CancelGrace time.Duration
	// JobNice is the scheduling niceness of job processes (0..19). Jobs that
	// saturate the CPUs then still leave the agent (heartbeats, log latency)
	// and a co-located server responsive; 0 runs jobs at the agent's own
	// priority.
	JobNice int

	Dialer  Dialer       // default GRPCDialer{Addr: Server, TLS: TLS}
	Clock   Clock        // default real time
	Sampler Sampler      // default NewHostSampler()
	Logger  *slog.Logger // default slog.Default()
	Backoff Backoff      // reconnect delays; zero value has sane defaults

	HandshakeTimeout time.Duration // Hello -> Welcome; default 10s
	// StopTimeout bounds delivering final logs after a cancel-all stop;
	// default 5s.
	StopTimeout time.Duration
	// MaxLogChunk is the largest LogChunk payload unless the server sets a
	// limit; default 64 KiB.
	MaxLogChunk int

	// MaxInflightLog is how many log bytes of one attempt may be sent and
	// not yet acknowledged (LogAck); more waits for acks. It bounds how much
	// a flooding job queues ahead of other jobs' output. Default 256 KiB;
	// negative: unlimited.
	MaxInflightLog int

	// ProtocolVersion overrides the version sent in Hello (tests only).
	ProtocolVersion *hwppb.Version
	// Capacity overrides the detected CPU and memory (tests only).
	CPUMillis, MemoryBytes uint64
}

// envAllowlist is what jobs inherit from the agent's environment by default.
var envAllowlist = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

func (c Config) withDefaults() (Config, error) {
	if c.WorkDir == "" {
		return c, errors.New("agent config: WorkDir is empty")
	}
	wd, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return c, fmt.Errorf("agent config: WorkDir: %w", err)
	}
	c.WorkDir = wd
	if c.Dialer == nil {
		if c.Server == "" {
			return c, errors.New("agent config: Server is empty")
		}
		c.Dialer = GRPCDialer{Addr: c.Server, TLS: c.TLS}
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "agent"
		}
		c.Name = h
	}
	if c.Slots <= 0 {
		c.Slots = runtime.NumCPU()
	}
	if c.Env == nil {
		for _, k := range envAllowlist {
			if v, ok := os.LookupEnv(k); ok {
				c.Env = append(c.Env, k+"="+v)
			}
		}
		if !hasEnv(c.Env, "PATH") {
			c.Env = append(c.Env, "PATH=/usr/local/bin:/usr/bin:/bin")
		}
	}
	if !hasEnv(c.Env, "TERM") {
		c.Env = append(c.Env, "TERM=xterm-256color")
	}
	if c.CancelGrace <= 0 {
		c.CancelGrace = DefaultCancelGrace
	}
	if c.JobNice < 0 || c.JobNice > 19 {
		return c, fmt.Errorf("agent config: JobNice %d: want 0..19", c.JobNice)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Sampler == nil {
		c.Sampler = NewHostSampler()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.MaxLogChunk <= 0 {
		c.MaxLogChunk = DefaultMaxLogChunk
	}
	switch {
	case c.MaxInflightLog == 0:
		c.MaxInflightLog = DefaultMaxInflightLog
	case c.MaxInflightLog < 0:
		c.MaxInflightLog = 0
	}
	if c.ProtocolVersion == nil {
		c.ProtocolVersion = hwppb.CurrentVersion()
	}
	if c.CPUMillis == 0 || c.MemoryBytes == 0 {
		cpu, mem := DetectCapacity()
		if c.CPUMillis == 0 {
			c.CPUMillis = cpu
		}
		if c.MemoryBytes == 0 {
			c.MemoryBytes = mem
		}
	}
	return c, nil
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}
