package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Target is an event store engine under measurement.
type Target interface {
	// Name names the engine in results, e.g. "bolt".
	Name() string
	// Open returns a fresh, empty store.
	Open(ctx context.Context) (Opened, error)
	// RawLoop writes records records of recordSize bytes, one key each,
	// batchSize per durable transaction (the last may be smaller), with the
	// durability settings the store uses, into a fresh place, and returns
	// records per second. It is the engine's limit for the store's workload.
	RawLoop(ctx context.Context, records, batchSize, recordSize int) (perSec float64, err error)
}

// KVRawLooper is a Target with a second raw loop, into a plain key/value
// table, when its RawLoop writes rows shaped like the store's.
type KVRawLooper interface {
	RawKVLoop(ctx context.Context, records, batchSize, recordSize int) (perSec float64, err error)
}

// Opened is a fresh store opened by a Target.
type Opened struct {
	Store eventstore.Store
	// CommitStats returns how many transactions holding appended events the
	// store has committed, and how many events they held. Their ratio is the
	// batch size group commit achieved.
	CommitStats func() (commits, events uint64)
	// Release closes the store if it is open and removes what Open created.
	Release func() error
}

// Defaults for StoreConfig.
const (
	DefaultEvents       = 200_000
	DefaultMaxDuration  = 2 * time.Second
	DefaultRepeat       = 3
	DefaultEventBytes   = 200
	DefaultStreamEvents = 10
)

// DefaultAppenders are the concurrencies Store measures by default.
var DefaultAppenders = []int{1, 8, 64, 512}

// StoreConfig configures Store. Only Target is required.
type StoreConfig struct {
	Target Target
	// Appenders are the concurrencies to measure (default 1, 8, 64, 512).
	Appenders []int
	// Events bounds the events appended at each concurrency (default
	// 200,000); MaxDuration bounds the time (default 3s). A run stops at
	// whichever comes first, so slow single-appender runs stay short.
	Events      int
	MaxDuration time.Duration
	// EventBytes is the stored size of one event: envelope and payload, as
	// eventstore.MarshalEnvelope writes it (default 200). Raw records have
	// exactly this size.
	EventBytes int
	// StreamEvents is how many events an appender writes to one stream (with
	// exact expected versions) before it starts the next (default 10, about
	// a job's life).
	StreamEvents int
	// ReadEvents is the size of the log the read scan reads (default Events).
	ReadEvents int
	// Repeat is how many times each measurement is made (default 3), a store
	// run then a raw loop, each pair close in time so both see the same
	// disturbance from the rest of the machine. The pair with the median
	// ratio is reported.
	Repeat int
	// Progress, when set, receives a line per finished step.
	Progress io.Writer
}

// StoreResult is the outcome of Store. Maps are keyed by the appender count
// in decimal ("1", "8", "64", "512").
type StoreResult struct {
	Target     string `json:"target"`
	EventBytes int    `json:"event_bytes"`
	// EventsPerSec is durable appends (one event each) per second: events
	// acknowledged, over the time from the first append to the last
	// acknowledgement.
	EventsPerSec map[string]float64 `json:"events_per_sec"`
	// EventsPerSecWithClose counts the store's Close in the time too: work
	// a store defers (the bolt store's index writes) is paid there.
	EventsPerSecWithClose map[string]float64 `json:"events_per_sec_with_close"`
	// CloseSeconds is how long the store's Close took after the run.
	CloseSeconds map[string]float64 `json:"close_seconds"`
	// RawEventsPerSec is the raw engine loop's records per second for the
	// same records in transactions of AvgBatch records.
	RawEventsPerSec map[string]float64 `json:"raw_events_per_sec"`
	// Ratio is EventsPerSec / RawEventsPerSec.
	Ratio map[string]float64 `json:"ratio"`
	// RawKVEventsPerSec and RatioKV are a second, looser limit where the
	// target has one (KVRawLooper): the same number of records of the same
	// size into the engine's plainest keyed table.
	RawKVEventsPerSec map[string]float64 `json:"raw_kv_events_per_sec,omitempty"`
	RatioKV           map[string]float64 `json:"ratio_kv,omitempty"`
	// AvgBatch is the events per commit the store's group commit achieved.
	AvgBatch map[string]float64 `json:"avg_batch"`
	// Events is how many events each run appended.
	Events map[string]int64 `json:"events"`
	// ReadEventsPerSec is a full scan of a log of ReadEvents events with
	// ReadAll pages of 1000, decoding every event.
	ReadEventsPerSec float64 `json:"read_events_per_sec"`
	ReadEvents       int     `json:"read_events"`
}

func (c StoreConfig) withDefaults() StoreConfig {
	if len(c.Appenders) == 0 {
		c.Appenders = DefaultAppenders
	}
	if c.Events <= 0 {
		c.Events = DefaultEvents
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.EventBytes <= 0 {
		c.EventBytes = DefaultEventBytes
	}
	if c.StreamEvents <= 0 {
		c.StreamEvents = DefaultStreamEvents
	}
	if c.ReadEvents <= 0 {
		c.ReadEvents = c.Events
	}
	if c.Repeat <= 0 {
		c.Repeat = DefaultRepeat
	}
	return c
}

// Store measures cfg.Target: appends at each concurrency with the raw loop
// after each, then the read scan.
func Store(ctx context.Context, cfg StoreConfig) (StoreResult, error) {
	if cfg.Target == nil {
		return StoreResult{}, errors.New("bench store: no target")
	}
	cfg = cfg.withDefaults()
	res := StoreResult{
		Target:                cfg.Target.Name(),
		EventBytes:            cfg.EventBytes,
		EventsPerSec:          map[string]float64{},
		EventsPerSecWithClose: map[string]float64{},
		CloseSeconds:          map[string]float64{},
		RawEventsPerSec:       map[string]float64{},
		Ratio:                 map[string]float64{},
		AvgBatch:              map[string]float64{},
		Events:                map[string]int64{},
	}
	for _, n := range cfg.Appenders {
		if n <= 0 {
			return res, fmt.Errorf("bench store: %d appenders", n)
		}
		type pair struct {
			run        runResult
			raw, rawKV float64
		}
		var pairs []pair
		for i := 0; i < cfg.Repeat; i++ {
			r, err := appendRun(ctx, cfg, n)
			if err != nil {
				return res, fmt.Errorf("bench store: %d appenders: %w", n, err)
			}
			batch := max(1, int(math.Round(r.avgBatch)))
			rr, err := cfg.Target.RawLoop(ctx, int(r.events), batch, cfg.EventBytes)
			if err != nil {
				return res, fmt.Errorf("bench store: raw loop, %d records in transactions of %d: %w", r.events, batch, err)
			}
			var kv float64
			if l, ok := cfg.Target.(KVRawLooper); ok {
				if kv, err = l.RawKVLoop(ctx, int(r.events), batch, cfg.EventBytes); err != nil {
					return res, fmt.Errorf("bench store: key/value raw loop, %d records in transactions of %d: %w", r.events, batch, err)
				}
			}
			cfg.progress("%4d appenders, run %d: %9.0f events/s, %.1f per commit; raw loop %9.0f records/s; ratio %.2f",
				n, i+1, r.perSec, r.avgBatch, rr, r.perSec/rr)
			pairs = append(pairs, pair{r, rr, kv})
		}
		slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.run.perSec/a.raw, b.run.perSec/b.raw) })
		run, raw, rawKV := pairs[len(pairs)/2].run, pairs[len(pairs)/2].raw, pairs[len(pairs)/2].rawKV
		if rawKV > 0 {
			if res.RawKVEventsPerSec == nil {
				res.RawKVEventsPerSec, res.RatioKV = map[string]float64{}, map[string]float64{}
			}
			res.RawKVEventsPerSec[strconv.Itoa(n)] = round(rawKV)
			res.RatioKV[strconv.Itoa(n)] = math.Round(run.perSec/rawKV*1000) / 1000
		}
		k := strconv.Itoa(n)
		res.EventsPerSec[k] = round(run.perSec)
		res.EventsPerSecWithClose[k] = round(run.perSecWithClose)
		res.CloseSeconds[k] = math.Round(run.close.Seconds()*1000) / 1000
		res.RawEventsPerSec[k] = round(raw)
		res.Ratio[k] = math.Round(run.perSec/raw*1000) / 1000
		res.AvgBatch[k] = math.Round(run.avgBatch*10) / 10
		res.Events[k] = run.events
		cfg.progress("%4d appenders: %9.0f events/s (%d events, %.1f per commit; %.0f/s counting a %.2fs close); raw loop %9.0f records/s; ratio %.2f",
			n, run.perSec, run.events, run.avgBatch, run.perSecWithClose, run.close.Seconds(), raw, run.perSec/raw)
	}
	perSec, err := readScan(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("bench store: read scan: %w", err)
	}
	res.ReadEventsPerSec, res.ReadEvents = round(perSec), cfg.ReadEvents
	cfg.progress("read scan: %9.0f events/s (%d events)", perSec, cfg.ReadEvents)
	return res, nil
}

func round(v float64) float64 { return math.Round(v) }

func (c StoreConfig) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

type runResult struct {
	events          int64
	perSec          float64
	perSecWithClose float64
	close           time.Duration
	avgBatch        float64
}

// appendRun appends single-event appends from n goroutines into a fresh
// store until cfg.Events events or cfg.MaxDuration, and closes the store.
func appendRun(ctx context.Context, cfg StoreConfig, n int) (runResult, error) {
	o, err := cfg.Target.Open(ctx)
	if err != nil {
		return runResult{}, err
	}
	defer o.Release()
	payloads := newPayloads(cfg.EventBytes)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var claimed, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(cfg.MaxDuration)
	for a := 0; a < n; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, version := 0, uint64(0)
			name := streamName(a, stream)
			payload := payloads.forStream(name)
			for claimed.Add(1) <= int64(cfg.Events) && time.Now().Before(deadline) {
				ev := eventstore.EventData{ID: eventstore.NewID(), Type: benchType, SchemaVersion: 1,
					Actor: benchActor, Payload: payload}
				r, err := o.Store.Append(ctx, name, eventstore.Exact(version), []eventstore.EventData{ev})
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				done.Add(1)
				if version = r.Version; version >= uint64(cfg.StreamEvents) {
					stream, version = stream+1, 0
					name = streamName(a, stream)
					payload = payloads.forStream(name)
				}
			}
		}()
	}
	wg.Wait()
	appended := time.Since(start)
	if firstErr != nil {
		return runResult{}, firstErr
	}
	var commits, events uint64
	if o.CommitStats != nil {
		commits, events = o.CommitStats()
	}
	if err := o.Store.Close(); err != nil {
		return runResult{}, err
	}
	elapsed := time.Since(start)
	count := float64(done.Load())
	r := runResult{events: done.Load(), perSec: count / appended.Seconds(), perSecWithClose: count / elapsed.Seconds(),
		close: elapsed - appended, avgBatch: 1}
	if commits > 0 {
		r.avgBatch = float64(events) / float64(commits)
	}
	if r.events == 0 {
		return r, errors.New("no event was appended")
	}
	return r, o.Release()
}

// readScan fills a fresh store with cfg.ReadEvents events (not timed) and
// times scans of the whole log, keeping the best of cfg.Repeat.
func readScan(ctx context.Context, cfg StoreConfig) (float64, error) {
	o, err := cfg.Target.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer o.Release()
	payloads := newPayloads(cfg.EventBytes)
	const perReq, perCall = 10, 100
	for filled := 0; filled < cfg.ReadEvents; {
		reqs := make([]eventstore.AppendRequest, 0, perCall)
		for len(reqs) < perCall && filled < cfg.ReadEvents {
			k := min(perReq, cfg.ReadEvents-filled)
			name := streamName(0, filled/perReq)
			payload := payloads.forStream(name)
			evs := make([]eventstore.EventData, k)
			for i := range evs {
				evs[i] = eventstore.EventData{ID: eventstore.NewID(), Type: benchType, SchemaVersion: 1,
					Actor: benchActor, Payload: payload}
			}
			reqs = append(reqs, eventstore.AppendRequest{Stream: name, Expected: eventstore.NoStream, Events: evs})
			filled += k
		}
		out, err := o.Store.AppendMany(ctx, reqs)
		if err != nil {
			return 0, fmt.Errorf("fill: %w", err)
		}
		for _, oc := range out {
			if oc.Err != nil {
				return 0, fmt.Errorf("fill: %w", oc.Err)
			}
		}
	}
	var best float64
	for i := 0; i < cfg.Repeat; i++ {
		start := time.Now()
		read := 0
		for from := uint64(1); ; {
			page, err := o.Store.ReadAll(ctx, from, 1000)
			if err != nil {
				return 0, err
			}
			if len(page) == 0 {
				break
			}
			read += len(page)
			from = page[len(page)-1].Position + 1
		}
		elapsed := time.Since(start)
		if read != cfg.ReadEvents {
			return 0, fmt.Errorf("scan read %d events, the log holds %d", read, cfg.ReadEvents)
		}
		best = max(best, float64(read)/elapsed.Seconds())
	}
	if err := o.Store.Close(); err != nil {
		return 0, err
	}
	return best, o.Release()
}

const (
	benchType  = "bench.appended"
	benchActor = "system:bench"
)

func streamName(appender, n int) string {
	return "bench-" + strconv.Itoa(appender) + "-" + strconv.Itoa(n)
}

// payloads sizes event payloads so that a stored event is EventBytes long
// whatever the length of its stream name. Payloads are shared and read-only.
type payloads struct {
	eventBytes int
	mu         sync.Mutex
	byLen      map[int][]byte // stream name length -> payload
}

func newPayloads(eventBytes int) *payloads {
	return &payloads{eventBytes: eventBytes, byLen: map[int][]byte{}}
}

func (p *payloads) forStream(stream string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.byLen[len(stream)]; ok {
		return b
	}
	n := p.eventBytes - storedSize(stream, nil)
	for n > 0 {
		over := storedSize(stream, make([]byte, n)) - p.eventBytes
		if over <= 0 {
			break
		}
		n -= over // a longer length prefix
	}
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	p.byLen[len(stream)] = b
	return b
}

// storedSize is the MarshalEnvelope size of a bench event on stream.
func storedSize(stream string, payload []byte) int {
	e := eventstore.Envelope{StreamID: stream, Type: benchType, Actor: benchActor, Payload: payload}
	return len(eventstore.MarshalEnvelope(nil, &e))
}
