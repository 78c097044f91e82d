package agent

import "time"

// Clock is the agent's time source: backoff waits, heartbeat ticks, job
// timeouts and cancel grace periods all go through it, so tests can drive
// them.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
