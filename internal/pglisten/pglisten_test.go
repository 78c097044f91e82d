package pglisten

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLoopRetriesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs int
	var lost []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, func(err error) { lost = append(lost, err) }, func(ctx context.Context) error {
			runs++
			if runs == 3 {
				cancel() // the third session ends with the context
				<-ctx.Done()
				return ctx.Err()
			}
			return errors.New("connection refused")
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not return after its context ended")
	}
	if runs != 3 || len(lost) != 2 || lost[0].Error() != "connection refused" {
		t.Fatalf("runs %d, lost %v: want 3 sessions and 2 reported failures", runs, lost)
	}
}
