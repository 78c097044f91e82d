package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

var errInjected = errors.New("injected rollback")

// TestGlobalOrderUnderChaos: 64 writers append to shared streams with random
// pauses, 5% of commit transactions are rolled back after writing their rows
// (and every transaction lingers a random moment before COMMIT), some appends
// conflict, and an unrelated transaction that has written a row stays open
// for the whole run (it would stall a reader that waits for the transaction
// horizon). A subscriber in this process and one in a second process (a
// standby store on the same database, woken by NOTIFY and polling) must each
// receive exactly the committed events: dense positions from 1, in order,
// and catch up promptly once the writers stop.
func TestGlobalOrderUnderChaos(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const writers = 64
	perWriter := 300
	if testing.Short() {
		perWriter = 40
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	s := open(t, dsn, postgres.Options{})
	other := open(t, dsn, postgres.Options{Standby: true, PollInterval: 100 * time.Millisecond})

	// The unrelated open transaction, holding a transaction id.
	blocker := pgtest.Conn(t, dsn)
	if _, err := blocker.Exec(ctx, "CREATE TABLE unrelated (x int)"); err != nil {
		t.Fatal(err)
	}
	btx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer btx.Rollback(context.Background())
	var xid *int64
	if _, err := btx.Exec(ctx, "INSERT INTO unrelated VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := btx.QueryRow(ctx, "SELECT pg_current_xact_id_if_assigned()::text::bigint").Scan(&xid); err != nil || xid == nil {
		t.Fatalf("the unrelated transaction holds no xid: %v", err)
	}

	// Every 20th transaction (5%) is rolled back after writing its rows.
	var hookMu sync.Mutex
	hookRng := rand.New(rand.NewSource(1))
	var attempts, rolledBack atomic.Int64
	s.SetBeforeCommit(func() error {
		hookMu.Lock()
		pause := time.Duration(hookRng.Intn(500)) * time.Microsecond
		hookMu.Unlock()
		time.Sleep(pause) // chaos: hold the transaction open a little, not a wait for a condition
		if attempts.Add(1)%20 == 3 {
			rolledBack.Add(1)
			return errInjected
		}
		return nil
	})

	// Subscribers start before the writers and read until told where the
	// log ends.
	type collected struct {
		events []eventstore.Envelope
		err    error
	}
	target := make(chan uint64, 2)
	subscribe := func(st *postgres.Store) <-chan collected {
		out := make(chan collected, 1)
		sub := st.Subscribe(0)
		go func() {
			defer sub.Close()
			var c collected
			end := uint64(0)
			for end == 0 || sub.Position() < end {
				if end == 0 {
					select {
					case end = <-target:
					default:
					}
				}
				nctx, ncancel := context.WithTimeout(ctx, 50*time.Millisecond)
				batch, err := sub.Next(nctx)
				ncancel()
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					continue // nothing new for a moment: look at target again
				}
				if err != nil {
					c.err = err
					break
				}
				c.events = append(c.events, batch...)
			}
			out <- c
		}()
		return out
	}
	local, remote := subscribe(s), subscribe(other)

	var mu sync.Mutex
	acked := map[eventstore.ID]eventstore.AppendResult{}
	var conflicts, injected atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + 100))
			for i := 0; i < perWriter; i++ {
				time.Sleep(time.Duration(rng.Intn(300)) * time.Microsecond) // chaos: writer think time
				stream := fmt.Sprintf("job-%d", rng.Intn(32))
				exp := eventstore.Any
				if rng.Intn(10) == 0 {
					exp = eventstore.Exact(uint64(rng.Intn(5)))
				}
				evs := make([]eventstore.EventData, 1+rng.Intn(3))
				for j := range evs {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "test.chaos", SchemaVersion: 1,
						Actor: "system:chaos", Payload: []byte(fmt.Sprintf("w%d i%d j%d", w, i, j))}
				}
				res, err := s.Append(ctx, stream, exp, evs)
				switch {
				case err == nil:
					mu.Lock()
					for j, e := range evs {
						r := res
						r.FirstPosition += uint64(j)
						acked[e.ID] = r
					}
					mu.Unlock()
				case errors.Is(err, eventstore.ErrVersionConflict):
					conflicts.Add(1)
				case errors.Is(err, errInjected):
					injected.Add(1)
				default:
					t.Errorf("writer %d: Append() = %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.SetBeforeCommit(nil)
	stop := time.Now()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target <- head.Position
	target <- head.Position
	t.Logf("%d events committed in %d transactions, %d appends conflicted, %d failed in %d rolled-back transactions",
		head.Position, s.Stats().Commits, conflicts.Load(), injected.Load(), rolledBack.Load())
	if rolledBack.Load() == 0 || injected.Load() == 0 {
		t.Fatalf("no transaction was rolled back: the test did not exercise rollbacks")
	}

	// The log is exactly the acknowledged set, dense and chained.
	all := readAll(t, s)
	if uint64(len(all)) != head.Position || len(all) != len(acked) {
		t.Fatalf("log holds %d events, head %d, %d acknowledged", len(all), head.Position, len(acked))
	}
	var prev eventstore.Hash
	for i := range all {
		e := &all[i]
		if err := eventstore.VerifyLink(uint64(i), prev, e); err != nil {
			t.Fatalf("chain: %v", err)
		}
		prev = e.Hash
		r, ok := acked[e.EventID]
		if !ok {
			t.Fatalf("position %d holds event %s that no append acknowledged", e.Position, e.EventID)
		}
		if r.FirstPosition != e.Position {
			t.Fatalf("event %s acknowledged at position %d, stored at %d", e.EventID, r.FirstPosition, e.Position)
		}
	}

	// Both subscribers saw the same sequence, promptly.
	for name, ch := range map[string]<-chan collected{"local": local, "other process": remote} {
		var c collected
		select {
		case c = <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s subscriber stalled: not at head %d 30s after the writers stopped", name, head.Position)
		}
		if c.err != nil {
			t.Fatalf("%s subscriber: %v", name, c.err)
		}
		if len(c.events) != len(all) {
			t.Fatalf("%s subscriber got %d events, the log holds %d", name, len(c.events), len(all))
		}
		for i := range c.events {
			if c.events[i].Position != all[i].Position || c.events[i].Hash != all[i].Hash {
				t.Fatalf("%s subscriber: event %d is position %d hash %s, the log has position %d hash %s",
					name, i, c.events[i].Position, c.events[i].Hash, all[i].Position, all[i].Hash)
			}
		}
	}
	t.Logf("subscribers caught up %v after the writers stopped", time.Since(stop).Round(time.Millisecond))
}

// readAll pages through the whole log.
func readAll(t testing.TB, s eventstore.Store) []eventstore.Envelope {
	t.Helper()
	var out []eventstore.Envelope
	for from := uint64(1); ; {
		page, err := s.ReadAll(context.Background(), from, 5000)
		if err != nil {
			t.Fatalf("ReadAll(%d) = %v", from, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		from = page[len(page)-1].Position + 1
	}
}
