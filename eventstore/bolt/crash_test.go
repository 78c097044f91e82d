package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
)

// The crash-safety test runs this test binary again as a child process that
// appends from several goroutines and writes a line to stdout for every
// acknowledged append. The parent SIGKILLs it at a random moment, then
// checks the file: every acknowledged event is there, no batch is partly
// there, the indexes agree with the log and the chain verifies. The child is
// selected by an environment variable in TestMain.

const (
	crashChildEnv = "HODEI_BOLT_CRASH_CHILD" // path of the log the child appends to
	crashSeedEnv  = "HODEI_BOLT_CRASH_SEED"
	crashItersEnv = "HODEI_CRASH_ITERATIONS"
)

var crashIterations = flag.Int("crash.iterations", 0,
	"kill-and-check iterations of TestCrashSafety (default 30, 8 with -short; also $"+crashItersEnv+")")

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashOptions make the child freeze and write index generations all the
// time, so kills land in every phase of the write path.
func crashOptions() Options {
	return Options{InitialMmapSize: 64 << 20, IndexGeneration: 200}
}

// crashChild appends until it is killed. Each append is one batch of 1-5
// events whose payloads name the batch, its size and the event's index; an
// acknowledged batch is reported as
//
//	ack <batch> <stream> <first position> <last position> <event ids, comma separated>
func crashChild(path string) int {
	seed, _ := strconv.ParseInt(os.Getenv(crashSeedEnv), 10, 64)
	s, err := Open(path, crashOptions())
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		return 3
	}
	var mu sync.Mutex
	report := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stdout.WriteString(line); err != nil {
			os.Exit(5)
		}
	}
	fail := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
		os.Exit(4)
	}
	for g := 0; g < 8; g++ {
		go func() {
			rng := rand.New(rand.NewSource(seed*100 + int64(g)))
			type sent struct {
				req eventstore.AppendRequest
				res eventstore.AppendResult
			}
			var history []sent
			ctx := context.Background()
			for {
				var reqs []eventstore.AppendRequest
				n := 1
				if rng.Intn(8) == 0 {
					n = 2 + rng.Intn(3)
				}
				for i := 0; i < n; i++ {
					reqs = append(reqs, crashBatch(rng, g))
				}
				if len(history) > 0 && rng.Intn(10) == 0 {
					// An idempotent retry of an acknowledged batch.
					h := history[rng.Intn(len(history))]
					res, err := s.Append(ctx, h.req.Stream, eventstore.Any, h.req.Events)
					want := h.res
					want.Duplicate = true
					if err != nil || res != want {
						fail("retry of %s = %+v, %v; want %+v", h.req.Stream, res, err, want)
					}
					continue
				}
				out, err := s.AppendMany(ctx, reqs)
				if err != nil {
					fail("AppendMany: %v", err)
				}
				for i, o := range out {
					if o.Err != nil {
						fail("append %s: %v", reqs[i].Stream, o.Err)
					}
					ids := make([]string, len(reqs[i].Events))
					for j := range ids {
						ids[j] = reqs[i].Events[j].ID.String()
					}
					batch := strings.Fields(string(reqs[i].Events[0].Payload))[0]
					report(fmt.Sprintf("ack %s %s %d %d %s\n", batch, reqs[i].Stream, o.Result.FirstPosition, o.Result.LastPosition, strings.Join(ids, ",")))
					if len(history) < 100 {
						history = append(history, sent{reqs[i], o.Result})
					}
				}
			}
		}()
	}
	select {} // until killed
}

func crashBatch(rng *rand.Rand, g int) eventstore.AppendRequest {
	k := 1 + rng.Intn(5)
	batch := eventstore.NewID().String()
	evs := make([]eventstore.EventData, k)
	for i := range evs {
		pad := strings.Repeat("x", rng.Intn(300))
		evs[i] = eventstore.EventData{ID: eventstore.NewID(), Type: "crash.appended", SchemaVersion: 1, Actor: "system:crash",
			Payload: []byte(fmt.Sprintf("%s %d %d %s", batch, k, i, pad))}
	}
	return eventstore.AppendRequest{Stream: fmt.Sprintf("crash-%d-%d", g, rng.Intn(30)), Expected: eventstore.Any, Events: evs}
}

type crashAck struct {
	batch, stream string
	first, last   uint64
	ids           []eventstore.ID
}

func parseAck(line string) (crashAck, error) {
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "ack" {
		return crashAck{}, fmt.Errorf("bad ack line %q", line)
	}
	a := crashAck{batch: f[1], stream: f[2]}
	var err1, err2 error
	a.first, err1 = strconv.ParseUint(f[3], 10, 64)
	a.last, err2 = strconv.ParseUint(f[4], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return a, fmt.Errorf("bad ack line %q: %w", line, err)
	}
	for _, s := range strings.Split(f[5], ",") {
		id, err := eventstore.ParseID(s)
		if err != nil {
			return a, fmt.Errorf("bad ack line %q: %w", line, err)
		}
		a.ids = append(a.ids, id)
	}
	return a, nil
}

func crashIters() int {
	if *crashIterations > 0 {
		return *crashIterations
	}
	if v, err := strconv.Atoi(os.Getenv(crashItersEnv)); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 8
	}
	return 30
}

func TestCrashSafety(t *testing.T) {
	iters := crashIters()
	seed := time.Now().UnixNano()
	t.Logf("seed %d, %d iterations", seed, iters)
	rng := rand.New(rand.NewSource(seed))
	path := filepath.Join(t.TempDir(), "crash.db")
	var acked []crashAck
	for i := 0; i < iters; i++ {
		// Kill after a random number of acknowledgements; 0 kills the
		// child while it opens the file.
		killAfter := rng.Intn(300)
		if rng.Intn(10) == 0 {
			killAfter = 0
		}
		acks := runCrashChild(t, path, seed+int64(i), killAfter)
		acked = append(acked, acks...)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && len(acked) == 0 {
			continue // killed before it created the file
		}
		if err := checkCrashLog(path, acked); err != nil {
			t.Fatalf("iteration %d (killed after %d acknowledgements): %v", i, killAfter, err)
		}
		checkFile(t, path)
	}
	if len(acked) == 0 {
		t.Fatalf("no append was acknowledged in %d iterations", iters)
	}
}

// runCrashChild starts the child on path, SIGKILLs it after killAfter
// acknowledgements and returns every acknowledgement it wrote.
func runCrashChild(t *testing.T, path string, seed int64, killAfter int) []crashAck {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashSeedEnv+"="+strconv.FormatInt(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that stops acknowledging (a deadlock) would hang the test:
	// kill it after a generous bound and fail.
	var hung bool
	var hungMu sync.Mutex
	watchdog := time.AfterFunc(2*time.Minute, func() {
		hungMu.Lock()
		hung = true
		hungMu.Unlock()
		_ = cmd.Process.Kill()
	})
	defer watchdog.Stop()
	if killAfter == 0 {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
	var acks []crashAck
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		a, err := parseAck(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
		if len(acks) == killAfter {
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	hungMu.Lock()
	defer hungMu.Unlock()
	if hung {
		t.Fatalf("child stopped acknowledging after %d appends; stderr:\n%s", len(acks), stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL; stderr:\n%s", err, stderr.String())
	}
	return acks
}

// checkCrashLog checks the log at path against the acknowledgements: every
// acknowledged batch is where it was acknowledged, and every batch in the
// log is whole, contiguous and stored once.
func checkCrashLog(path string, acked []crashAck) error {
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	defer s.Close()
	all, err := readAllEvents(s)
	if err != nil {
		return err
	}
	for _, a := range acked {
		if a.last > uint64(len(all)) || a.last-a.first+1 != uint64(len(a.ids)) {
			return fmt.Errorf("acknowledged batch %s at %d-%d: the log ends at %d", a.batch, a.first, a.last, len(all))
		}
		for i, id := range a.ids {
			e := &all[a.first-1+uint64(i)]
			if e.EventID != id || e.StreamID != a.stream {
				return fmt.Errorf("acknowledged event %s of batch %s: position %d holds %s on %s", id, a.batch, e.Position, e.EventID, e.StreamID)
			}
		}
	}
	type seen struct {
		k, n      int
		last      uint64
		firstSeen uint64
	}
	batches := map[string]*seen{}
	for i := range all {
		e := &all[i]
		f := strings.Fields(string(e.Payload))
		if len(f) < 3 {
			return fmt.Errorf("position %d: payload %q is not a crash event", e.Position, e.Payload)
		}
		k, _ := strconv.Atoi(f[1])
		idx, _ := strconv.Atoi(f[2])
		b := batches[f[0]]
		if b == nil {
			b = &seen{k: k, firstSeen: e.Position}
			batches[f[0]] = b
		} else if e.Position != b.last+1 {
			return fmt.Errorf("batch %s: event at %d does not follow its event at %d (stored twice or interleaved)", f[0], e.Position, b.last)
		}
		if idx != b.n {
			return fmt.Errorf("batch %s: position %d holds event %d, want %d", f[0], e.Position, idx, b.n)
		}
		b.n++
		b.last = e.Position
	}
	for id, b := range batches {
		if b.n != b.k {
			return fmt.Errorf("batch %s at %d: %d of its %d events are in the log (partial batch)", id, b.firstSeen, b.n, b.k)
		}
	}
	return nil
}
