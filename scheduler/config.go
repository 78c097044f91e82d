package scheduler

import (
	"fmt"
	"math"
	"time"
)

// Strategy is how the allocation part of the score ranks workers.
type Strategy uint8

// Strategies.
const (
	// Spread prefers the least allocated worker (Kubernetes LeastAllocated):
	// jobs spread out, failures hit fewer jobs, load stays even.
	Spread Strategy = iota
	// BinPack prefers the most allocated worker that still fits (Kubernetes
	// MostAllocated): jobs pack tight, whole workers stay free for big jobs
	// and for scaling down.
	BinPack
)

// String returns "spread" or "binpack".
func (s Strategy) String() string {
	if s == BinPack {
		return "binpack"
	}
	return "spread"
}

// Config tunes a Scheduler. The zero Config is a sensible default; every
// zero field means "use the default" given in its comment.
type Config struct {
	// Strategy ranks workers by allocation: Spread (default) or BinPack.
	Strategy Strategy
	// Seed seeds the random candidate sampling and tie-breaking, so a run is
	// reproducible. 0 means 1.
	Seed uint64

	// SampleSize is how many feasible workers a decision scores. 0 means
	// max(2, ceil(log2 N)) for N workers (Nomad's limit for service jobs):
	// 10 at 1,000 workers, 14 at 10,000.
	SampleSize int
	// AffinitySampleSize is the sample size for jobs with affinity
	// preferences, which need a wider look to find the preferred workers.
	// Default 32.
	AffinitySampleSize int

	// HeartbeatInterval is how often agents report telemetry. Default 5s.
	HeartbeatInterval time.Duration
	// StaleAfter is the age after which telemetry is neutral: the load score
	// falls back to what the scheduler itself reserved. Default 3 heartbeat
	// intervals.
	StaleAfter time.Duration
	// ExpireAfter is the age of the last sign of life (heartbeat or
	// registration) after which a worker gets no new jobs. Default 12
	// heartbeat intervals (60s).
	ExpireAfter time.Duration

	// AgingRate is the wait that is worth one priority point: a job of
	// priority p submitted at t is ahead of every job of its queue submitted
	// after t + (MaxPriority-p)*AgingRate (see "Ordering and fairness" in the
	// package doc). Default 5s, so with the domain's priorities 1..100 a
	// priority-1 job is ahead of any newer job after 8m15s.
	AgingRate time.Duration

	// BackoffMin and BackoffMax bound the retry delay of a job that fits
	// some worker but found no room (doubling per failure). Defaults 1s, 10s.
	BackoffMin, BackoffMax time.Duration
	// ParkedRetryMin and ParkedRetryMax bound the periodic re-check of a
	// parked shape (doubling per failure). Defaults 5s, 5m.
	ParkedRetryMin, ParkedRetryMax time.Duration
	// Jitter spreads every retry delay by +-Jitter (a fraction). Default 0.2.
	Jitter float64
	// WakePerRelease is how many blocked jobs each released reservation
	// brings back for another try, best first. Default 4.
	WakePerRelease int

	// AllocWeight, LoadWeight and AffinityWeight weigh the parts of a
	// worker's score (each in [0, 1]). If all three are 0 the defaults 1, 1
	// and 2 are used; otherwise they are taken as given, and 0 turns a part
	// off.
	AllocWeight, LoadWeight, AffinityWeight float64
	// CPUEstimateFactor and MemoryEstimateFactor estimate a new job's usage
	// from its request before telemetry shows it (Koordinator: 0.85, 0.70).
	CPUEstimateFactor, MemoryEstimateFactor float64

	// QueueWeights are the DRF weights of queues; a queue not listed has
	// weight 1.
	QueueWeights map[string]float64
	// SelectorCacheSize bounds the table of distinct selectors (each caches
	// its matching workers, about N/32 bytes); when it is full it is emptied
	// and refilled as jobs arrive. Default 4096.
	SelectorCacheSize int
}

func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.AffinitySampleSize == 0 {
		c.AffinitySampleSize = 32
	}
	def(&c.HeartbeatInterval, 5*time.Second)
	def(&c.StaleAfter, 3*c.HeartbeatInterval)
	def(&c.ExpireAfter, 12*c.HeartbeatInterval)
	def(&c.AgingRate, 5*time.Second)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, 10*time.Second)
	def(&c.ParkedRetryMin, 5*time.Second)
	def(&c.ParkedRetryMax, 5*time.Minute)
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.WakePerRelease == 0 {
		c.WakePerRelease = 4
	}
	if c.AllocWeight == 0 && c.LoadWeight == 0 && c.AffinityWeight == 0 {
		c.AllocWeight, c.LoadWeight, c.AffinityWeight = 1, 1, 2
	}
	if c.CPUEstimateFactor == 0 {
		c.CPUEstimateFactor = 0.85
	}
	if c.MemoryEstimateFactor == 0 {
		c.MemoryEstimateFactor = 0.70
	}
	if c.SelectorCacheSize == 0 {
		c.SelectorCacheSize = 4096
	}

	bad := func(field, format string, args ...any) (Config, error) {
		return c, fmt.Errorf("new scheduler: %w", invalid(field, format, args...))
	}
	switch {
	case c.Strategy != Spread && c.Strategy != BinPack:
		return bad("strategy", "unknown strategy %d", c.Strategy)
	case c.SampleSize < 0 || c.SampleSize > 4096:
		return bad("sample_size", "%d is outside 0..4096", c.SampleSize)
	case c.AffinitySampleSize < 0 || c.AffinitySampleSize > 4096:
		return bad("affinity_sample_size", "%d is outside 0..4096", c.AffinitySampleSize)
	case c.HeartbeatInterval < 0:
		return bad("heartbeat_interval", "%s is negative", c.HeartbeatInterval)
	case c.StaleAfter < 0:
		return bad("stale_after", "%s is negative", c.StaleAfter)
	case c.ExpireAfter < c.StaleAfter:
		return bad("expire_after", "%s is shorter than stale_after %s", c.ExpireAfter, c.StaleAfter)
	case c.AgingRate < 0:
		return bad("aging_rate", "%s is negative", c.AgingRate)
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return bad("backoff_max", "%s..%s is not a valid range", c.BackoffMin, c.BackoffMax)
	case c.ParkedRetryMin < 0 || c.ParkedRetryMax < c.ParkedRetryMin:
		return bad("parked_retry_max", "%s..%s is not a valid range", c.ParkedRetryMin, c.ParkedRetryMax)
	case !(c.Jitter >= 0 && c.Jitter < 1):
		return bad("jitter", "%v is outside [0, 1)", c.Jitter)
	case c.WakePerRelease < 0:
		return bad("wake_per_release", "%d is negative", c.WakePerRelease)
	case badWeight(c.AllocWeight) || badWeight(c.LoadWeight) || badWeight(c.AffinityWeight):
		return bad("weights", "alloc %v, load %v, affinity %v: each must be finite and >= 0",
			c.AllocWeight, c.LoadWeight, c.AffinityWeight)
	case badFactor(c.CPUEstimateFactor):
		return bad("cpu_estimate_factor", "%v is outside (0, 10]", c.CPUEstimateFactor)
	case badFactor(c.MemoryEstimateFactor):
		return bad("memory_estimate_factor", "%v is outside (0, 10]", c.MemoryEstimateFactor)
	case c.SelectorCacheSize < 0:
		return bad("selector_cache_size", "%d is negative", c.SelectorCacheSize)
	}
	for q, w := range c.QueueWeights {
		if badWeight(w) || w == 0 {
			return bad("queue_weights["+q+"]", "%v must be finite and > 0", w)
		}
	}
	return c, nil
}

func badWeight(w float64) bool { return math.IsNaN(w) || math.IsInf(w, 0) || w < 0 }
func badFactor(f float64) bool { return !(f > 0 && f <= 10) }
