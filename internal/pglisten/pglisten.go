// Package pglisten keeps a PostgreSQL LISTEN session alive: it runs a
// session function again and again, with jittered exponential backoff after
// failures, until its context ends. Both PostgreSQL adapters (event store,
// job logs) use it for their NOTIFY listeners, which are only hints: their
// readers poll as well, so a notification lost while the session is down
// costs at most a poll interval.
package pglisten

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = 5 * time.Second
	// healthy is how long a session must have lasted for the backoff to
	// start over from firstBackoff.
	healthy = 10 * time.Second
)

// Loop runs session until ctx ends. session connects, LISTENs and handles
// notifications, returning only when the connection fails; Loop then calls
// lost with the error (while ctx is live) and runs it again after a backoff
// that doubles from 50 ms to 5 s, starting over after a session that lasted
// 10 s.
func Loop(ctx context.Context, lost func(error), session func(context.Context) error) {
	backoff := firstBackoff
	for {
		start := time.Now()
		err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > healthy {
			backoff = firstBackoff
		}
		lost(err)
		// Jitter: listeners of many processes do not reconnect in step.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
