package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestCrashSafety kills the committer's backend with pg_terminate_backend at
// random moments while 16 writers append. A writer whose append fails retries
// it with the same events (same ids) until it is acknowledged: a retry after a
// commit whose outcome was unknown must return the original result rather
// than write twice. Afterwards every acknowledged event is stored at the
// position its append returned, no event is stored twice, positions are
// dense and the chain verifies.
func TestCrashSafety(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const writers = 16
	perWriter, minKills := 150, 20
	if testing.Short() {
		perWriter, minKills = 25, 5
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := open(t, dsn, postgres.Options{CommitTimeout: 20 * time.Second})
	admin := pgtest.Conn(t, dsn)

	type ack struct {
		stream string
		data   eventstore.EventData
		pos    uint64
	}
	var mu sync.Mutex
	var acks []ack
	var retries, duplicates atomic.Int64
	var kills atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			// Write at least perWriter appends, and on until the chaos loop
			// has killed minKills committers: a fast machine must not end
			// the test before it exercised crashes.
			for i := 0; (i < perWriter || kills.Load() < int64(minKills)) && ctx.Err() == nil; i++ {
				stream := fmt.Sprintf("worker-%d", rng.Intn(16))
				evs := make([]eventstore.EventData, 1+rng.Intn(3))
				for j := range evs {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "test.crash", SchemaVersion: 1,
						Actor: "system:crash", Payload: []byte(fmt.Sprintf("w%d i%d j%d", w, i, j))}
				}
				var res eventstore.AppendResult
				var err error
				for attempt := 0; ; attempt++ {
					if attempt == 100 {
						t.Errorf("writer %d: append not acknowledged after %d attempts: %v", w, attempt, err)
						return
					}
					if res, err = s.Append(ctx, stream, eventstore.Any, evs); err == nil {
						break
					}
					retries.Add(1)
				}
				if res.Duplicate {
					duplicates.Add(1)
				}
				mu.Lock()
				for j := range evs {
					acks = append(acks, ack{stream, evs[j], res.FirstPosition + uint64(j)})
				}
				mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	rng := rand.New(rand.NewSource(99))
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(time.Duration(2+rng.Intn(30)) * time.Millisecond): // chaos: a random moment
			if pid := s.CommitterPID(); pid != 0 {
				var ok bool
				if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok); err != nil {
					t.Fatalf("pg_terminate_backend: %v", err)
				}
				if ok {
					kills.Add(1)
				}
			}
		}
	}
	t.Logf("%d committer backends killed; %d retries, %d of them answered as duplicates", kills.Load(), retries.Load(), duplicates.Load())
	if kills.Load() < int64(minKills) {
		t.Fatalf("only %d kills: the test did not exercise crashes", kills.Load())
	}

	all := readAll(t, s)
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(all)) != head.Position {
		t.Fatalf("log holds %d events, head is %d", len(all), head.Position)
	}
	var prev eventstore.Hash
	seen := map[eventstore.ID]bool{}
	for i := range all {
		e := &all[i]
		if err := eventstore.VerifyLink(uint64(i), prev, e); err != nil {
			t.Fatalf("chain: %v", err)
		}
		prev = e.Hash
		if seen[e.EventID] {
			t.Fatalf("event %s stored twice", e.EventID)
		}
		seen[e.EventID] = true
	}
	if head.Hash != prev {
		t.Fatalf("head hash %s, last event's hash %s", head.Hash, prev)
	}
	if len(acks) != len(all) {
		t.Fatalf("%d events acknowledged, %d stored: an unacknowledged append was stored or an acknowledged one lost", len(acks), len(all))
	}
	for _, a := range acks {
		e := &all[a.pos-1]
		if !eventstore.SameContent(e, a.stream, &a.data) {
			t.Fatalf("position %d holds %s on %s, its append acknowledged %s on %s", a.pos, e.EventID, e.StreamID, a.data.ID, a.stream)
		}
	}
}

// TestRetryAfterUnknownCommit loses the connection exactly after the server
// committed, before the client hears it: the append fails with
// ErrCommitUnknown although its events are stored. Retrying it returns the
// original result (Duplicate), a subscriber sees the events exactly once, and
// the next append takes the next position.
func TestRetryAfterUnknownCommit(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newCommitDropper(t, dsn)
	s := open(t, p.dsn, postgres.Options{})
	sub := s.Subscribe(0)
	defer sub.Close()

	a := []eventstore.EventData{newEvent(1)}
	if _, err := s.Append(ctx, "job-1", eventstore.NoStream, a); err != nil {
		t.Fatalf("Append(a) = %v", err)
	}
	b := []eventstore.EventData{newEvent(2), newEvent(3)}
	p.arm()
	_, err := s.Append(ctx, "job-1", eventstore.Exact(1), b)
	if !errors.Is(err, postgres.ErrCommitUnknown) {
		t.Fatalf("Append(b) with the COMMIT reply lost = %v, want ErrCommitUnknown", err)
	}
	if !p.fired() {
		t.Fatal("the proxy never dropped a COMMIT reply")
	}
	// It was committed: the retry (whatever its expectation) says so.
	res, err := s.Append(ctx, "job-1", eventstore.Exact(1), b)
	want := eventstore.AppendResult{FirstPosition: 2, LastPosition: 3, Version: 3, Duplicate: true}
	if err != nil || res != want {
		t.Fatalf("retry of b = %+v, %v; want %+v", res, err, want)
	}
	res, err = s.Append(ctx, "job-1", eventstore.Exact(3), []eventstore.EventData{newEvent(4)})
	if err != nil || res.FirstPosition != 4 {
		t.Fatalf("Append(c) = %+v, %v; want position 4", res, err)
	}
	var got []uint64
	for len(got) < 4 {
		batch, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		for _, e := range batch {
			got = append(got, e.Position)
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("subscriber got positions %v, want [1 2 3 4]", got)
	}
}

// commitDropper is a loopback TCP proxy to PostgreSQL that, once armed,
// swallows the server's reply to the next COMMIT and cuts both connections:
// the transaction is committed, the client cannot know.
type commitDropper struct {
	dsn   string
	armed atomic.Bool
	done  atomic.Bool
}

func newCommitDropper(t *testing.T, dsn string) *commitDropper {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	upstream := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("commit dropper needs a URL DSN: %v", err)
	}
	u.Host = ln.Addr().String()
	p := &commitDropper{dsn: u.String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); p.relay(c, s); c.Close(); s.Close() }()
		}
	}()
	return p
}

func (p *commitDropper) arm()        { p.armed.Store(true) }
func (p *commitDropper) fired() bool { return p.done.Load() }

// relay copies server messages to the client, one message at a time.
func (p *commitDropper) relay(client, server net.Conn) {
	r := bufio.NewReader(server)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if hdr[0] == 'C' && string(bytes.TrimRight(body, "\x00")) == "COMMIT" && p.armed.CompareAndSwap(true, false) {
			p.done.Store(true)
			return // the reply is lost with the connection
		}
		if _, err := client.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}
