package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
)

func TestBackoffGrowsWithJitterAndResets(t *testing.T) {
	r := 0.0
	b := agent.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Factor: 2, Jitter: 0.5, Rand: func() float64 { return r }}
	want := []time.Duration{50, 100, 200, 400, 500, 500} // lower bounds (r = 0), ms
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("Next() #%d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	r = 0.999999
	if got := b.Next(); got < 99*time.Millisecond || got > 100*time.Millisecond {
		t.Fatalf("Next() after Reset with r~1 = %v, want ~100ms", got)
	}
}

// recordingClock fires every After at once and records the durations asked.
type recordingClock struct {
	mu sync.Mutex
	ds []time.Duration
}

func (c *recordingClock) Now() time.Time { return time.Now() }
func (c *recordingClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.ds = append(c.ds, d)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

type downDialer struct {
	n      int
	cancel context.CancelFunc
}

func (d *downDialer) Dial(context.Context) (agent.Stream, func(), error) {
	d.n++
	if d.n == 6 {
		d.cancel()
	}
	return nil, nil, errors.New("dial: connection refused")
}

func TestReconnectBacksOffThroughInjectedClock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &recordingClock{}
	d := &downDialer{cancel: cancel}
	a, err := agent.New(agent.Config{
		Dialer: d, Clock: clock, WorkDir: t.TempDir(), StopTimeout: time.Millisecond,
		Backoff: agent.Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, Rand: func() float64 { return 0.5 }},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	clock.mu.Lock()
	defer clock.mu.Unlock()
	// 0.75 of 10, 20, 40, 40, 40 ms (Jitter 0.5, Rand 0.5); the stop timeout
	// may follow.
	want := []time.Duration{7500, 15000, 30000, 30000, 30000}
	if len(clock.ds) < len(want) {
		t.Fatalf("After() calls = %v, want at least %d", clock.ds, len(want))
	}
	for i, w := range want {
		if clock.ds[i] != w*time.Microsecond {
			t.Fatalf("backoff #%d = %v, want %v (all: %v)", i, clock.ds[i], w*time.Microsecond, clock.ds)
		}
	}
}
