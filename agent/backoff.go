package agent

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential from Min by Factor up to Max,
// with "equal jitter" (a uniformly random delay in [d*(1-Jitter), d]) so a
// fleet of agents that lost the same server does not reconnect in lockstep.
type Backoff struct {
	Min    time.Duration // first delay; 0 means 50ms
	Max    time.Duration // cap; 0 means 10s
	Factor float64       // growth per attempt; 0 means 2
	Jitter float64       // fraction of the delay that is random, 0..1; 0 means 0.5
	// Rand returns a float in [0,1); nil means math/rand/v2.
	Rand func() float64

	attempt int
}

// Next returns the delay before the next attempt and advances.
func (b *Backoff) Next() time.Duration {
	lo, hi, f, j := b.Min, b.Max, b.Factor, b.Jitter
	if lo <= 0 {
		lo = 50 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	if f <= 1 {
		f = 2
	}
	if j <= 0 || j > 1 {
		j = 0.5
	}
	d := float64(lo)
	for i := 0; i < b.attempt && d < float64(hi); i++ {
		d *= f
	}
	d = min(d, float64(hi))
	b.attempt++
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(d*(1-j) + r()*d*j)
}

// Reset starts again from Min (after a connection that got Welcome).
func (b *Backoff) Reset() { b.attempt = 0 }
