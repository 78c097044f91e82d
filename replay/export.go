package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Record is one event in the export format: one JSON object per line, in
// position order. Every envelope field is there, ids in UUID form, hashes in
// hex, the time in NanoTimeFormat. The payload is there twice: Payload is its
// fields as stored (eventstore.DecodeFields, at the stored schema version,
// not upcast) for people and tools; PayloadMsgpack is the stored bytes
// (base64 in JSON), which import appends unchanged, so the chain hashes come
// out equal.
type Record struct {
	Position       uint64          `json:"position"`
	Stream         string          `json:"stream"`
	StreamVersion  uint64          `json:"stream_version"`
	Type           string          `json:"type"`
	SchemaVersion  uint16          `json:"schema_version"`
	EventID        string          `json:"event_id"`
	Time           string          `json:"time"`
	Actor          string          `json:"actor"`
	CorrelationID  string          `json:"correlation_id"`
	CausationID    string          `json:"causation_id"`
	Payload        json.RawMessage `json:"payload"`
	PayloadMsgpack []byte          `json:"payload_msgpack"`
	PrevHash       string          `json:"prev_hash"`
	Hash           string          `json:"hash"`
	// PayloadError says why Payload is null: the stored bytes are not a
	// msgpack map (a foreign or damaged event). They are exported anyway.
	PayloadError string `json:"payload_error,omitempty"`
}

// NewRecord returns the export record of env. A payload that is not a
// msgpack map is exported as its bytes only, with Payload null and
// PayloadError saying why.
func NewRecord(env *eventstore.Envelope) Record {
	payload, err := payloadJSON(env.Payload)
	perr := ""
	if err != nil {
		payload, perr = json.RawMessage("null"), err.Error()
	}
	return Record{
		Position: env.Position, Stream: env.StreamID, StreamVersion: env.StreamVersion,
		Type: env.Type, SchemaVersion: env.SchemaVersion, EventID: env.EventID.String(),
		Time: env.Time.UTC().Format(NanoTimeFormat), Actor: env.Actor,
		CorrelationID: env.CorrelationID.String(), CausationID: env.CausationID.String(),
		Payload: payload, PayloadMsgpack: env.Payload,
		PrevHash: env.PrevHash.String(), Hash: env.Hash.String(), PayloadError: perr,
	}
}

// payloadJSON renders a msgpack payload's fields as a JSON object.
func payloadJSON(msgpack []byte) (json.RawMessage, error) {
	fields, err := eventstore.DecodeFields(msgpack)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonFields(fields)); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Envelope parses r back into the envelope it was exported from. Errors name
// the field.
func (r *Record) Envelope() (eventstore.Envelope, error) {
	e := eventstore.Envelope{
		Position: r.Position, StreamID: r.Stream, StreamVersion: r.StreamVersion, Type: r.Type,
		SchemaVersion: r.SchemaVersion, Actor: r.Actor, Payload: r.PayloadMsgpack,
	}
	var err error
	if e.EventID, err = eventstore.ParseID(r.EventID); err != nil {
		return e, fmt.Errorf("event_id: %w", err)
	}
	if e.CorrelationID, err = eventstore.ParseID(r.CorrelationID); err != nil {
		return e, fmt.Errorf("correlation_id: %w", err)
	}
	if e.CausationID, err = eventstore.ParseID(r.CausationID); err != nil {
		return e, fmt.Errorf("causation_id: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return e, fmt.Errorf("time: %w", err)
	}
	e.Time = time.Unix(0, t.UnixNano()).UTC()
	if e.PrevHash, err = parseHash(r.PrevHash); err != nil {
		return e, fmt.Errorf("prev_hash: %w", err)
	}
	if e.Hash, err = parseHash(r.Hash); err != nil {
		return e, fmt.Errorf("hash: %w", err)
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	return e, nil
}

// parseHash parses 64 hex digits.
func parseHash(s string) (eventstore.Hash, error) {
	var h eventstore.Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%q: want %d hex digits", s, 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%q: %w", s, err)
	}
	return h, nil
}

// ExportOptions selects what Export writes.
type ExportOptions struct {
	// From and To bound the positions exported (inclusive). From 0 means 1;
	// To 0 means the head as it is when Export starts.
	From, To uint64
	// Progress, when set, is called now and then with the events written.
	Progress func(done, total uint64)
}

// ExportReport says what Export wrote.
type ExportReport struct {
	Events uint64
	// First and Last are the first and last positions written (0 when none).
	First, Last uint64
	// LastHash is the hash of the last event written.
	LastHash eventstore.Hash
}

// Log is the read side of a store that replay's tools need: every
// eventstore.Store is one.
type Log interface {
	eventstore.Reader
	Header
}

// Export writes the events from opts.From to opts.To as JSON lines to w. It
// checks the chain as it goes (each event's hash, and each link after the
// first), so a damaged log is not exported as if it were intact: the error
// names the first bad position.
func Export(ctx context.Context, log Log, w io.Writer, opts ExportOptions) (ExportReport, error) {
	var rep ExportReport
	from := max(opts.From, 1)
	head, err := log.Head(ctx)
	if err != nil {
		return rep, fmt.Errorf("export: head: %w", err)
	}
	to := opts.To
	switch {
	case to > head.Position:
		return rep, fmt.Errorf("export: to %d is past the head of the log (position %d)", to, head.Position)
	case to == 0:
		to = head.Position
	}
	if from > to {
		if head.Position == 0 {
			return rep, nil // an empty log exports as an empty file
		}
		return rep, fmt.Errorf("export: from %d is after to %d", from, to)
	}
	total := to - from + 1
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var prev eventstore.Hash
	for pos := from; pos <= to; {
		page, err := log.ReadAll(ctx, pos, int(min(to-pos+1, 4096)))
		if err != nil {
			return rep, fmt.Errorf("export: read from %d: %w", pos, err)
		}
		if len(page) == 0 {
			return rep, fmt.Errorf("export: the log ends at %d, before %d", pos-1, to)
		}
		for i := range page {
			e := &page[i]
			if err := checkLink(pos, prev, e); err != nil {
				return rep, fmt.Errorf("export: %w", err)
			}
			rec := NewRecord(e)
			if err := enc.Encode(&rec); err != nil {
				return rep, fmt.Errorf("export position %d: %w", e.Position, err)
			}
			pos, prev = e.Position+1, e.Hash
			rep.Events++
			rep.Last, rep.LastHash = e.Position, e.Hash
			if rep.First == 0 {
				rep.First = e.Position
			}
		}
		if opts.Progress != nil {
			opts.Progress(rep.Events, total)
		}
	}
	if err := bw.Flush(); err != nil {
		return rep, fmt.Errorf("export: write: %w", err)
	}
	return rep, nil
}

// checkLink checks that e is at position want with a correct hash and, unless
// it is the first event read (prev zero and want > 1), that it links to prev.
func checkLink(want uint64, prev eventstore.Hash, e *eventstore.Envelope) error {
	if want == 1 || !prev.IsZero() {
		return eventstore.VerifyLink(want-1, prev, e)
	}
	if e.Position != want {
		return &eventstore.CorruptError{Position: want, Reason: fmt.Sprintf("missing: next stored event is at position %d", e.Position)}
	}
	if eventstore.ChainHash(e) != e.Hash {
		return &eventstore.CorruptError{Position: e.Position, Reason: "hash does not match content"}
	}
	return nil
}

// ImportOptions configures Import.
type ImportOptions struct {
	// BatchEvents is how many events go to the store in one AppendMany
	// (default 4096).
	BatchEvents int
	// Progress, when set, is called now and then: in phase "check" with the
	// bytes read so far, in phase "import" with the events appended and the
	// total.
	Progress func(phase string, done, total uint64)
}

// ImportReport says what Import appended.
type ImportReport struct {
	Events uint64
	Head   eventstore.Head
}

// ImportError names the record (by position, or by line when the line does
// not parse) that made Import refuse.
type ImportError struct {
	Line     int
	Position uint64
	Reason   string
}

func (e *ImportError) Error() string {
	if e.Position == 0 {
		return fmt.Sprintf("import: line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("import: position %d (line %d): %s", e.Position, e.Line, e.Reason)
}

// Import appends an export (Export's JSON lines, from position 1) to store,
// which must be empty, and proves the result identical: every envelope the
// store ends up with, hash included, equals the exported one.
//
// It reads r twice. The first pass checks the whole file and writes nothing:
// positions dense from 1, stream versions contiguous, event ids unique, each
// payload's JSON equal to its msgpack bytes, and the hash chain (each record's
// hash recomputed from its fields and linked to the one before). The second
// pass appends the events in order, with their original ids, times, actors,
// correlation and causation ids and payload bytes, each stream's run at its
// exact expected version, then reads every event back and compares it. Any
// difference is an *ImportError naming the position; a difference found in
// the second pass means the store has appended part of the file (an adapter
// that does not reproduce envelopes exactly): discard it.
func Import(ctx context.Context, store eventstore.Store, r io.ReadSeeker, opts ImportOptions) (ImportReport, error) {
	var rep ImportReport
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = 4096
	}
	head, err := store.Head(ctx)
	if err != nil {
		return rep, fmt.Errorf("import: head: %w", err)
	}
	if head.Position != 0 {
		return rep, fmt.Errorf("import: the store is not empty (its head is position %d); import only into an empty store", head.Position)
	}
	n, err := checkExport(ctx, r, opts.Progress)
	if err != nil {
		return rep, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return rep, fmt.Errorf("import: rewind: %w", err)
	}
	im := importer{ctx: ctx, store: store, opts: opts, total: n}
	err = scanRecords(r, nil, func(line int, rec *Record, env *eventstore.Envelope) error {
		return im.add(line, env)
	})
	if err == nil {
		err = im.flush()
	}
	rep.Events = im.done
	if err != nil {
		return rep, err
	}
	if rep.Head, err = store.Head(ctx); err != nil {
		return rep, fmt.Errorf("import: head: %w", err)
	}
	if rep.Head != im.last {
		return rep, fmt.Errorf("import: the store's head is position %d hash %s, the export ends at position %d hash %s",
			rep.Head.Position, rep.Head.Hash, im.last.Position, im.last.Hash)
	}
	return rep, nil
}

// scanRecords calls fn with every record of r, parsed, in order.
func scanRecords(r io.Reader, read func(n int), fn func(line int, rec *Record, env *eventstore.Envelope) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 4*eventstore.MaxPayloadSize)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if read != nil {
			read(len(b) + 1)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return &ImportError{Line: line, Reason: fmt.Sprintf("not an export record: %v", err)}
		}
		env, err := rec.Envelope()
		if err != nil {
			return &ImportError{Line: line, Position: rec.Position, Reason: err.Error()}
		}
		if err := fn(line, &rec, &env); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("import: read line %d: %w", line+1, err)
	}
	return nil
}

// checkExport is Import's first pass; it returns the number of records.
func checkExport(ctx context.Context, r io.Reader, progress func(string, uint64, uint64)) (uint64, error) {
	var count, read uint64
	var prev eventstore.Hash
	versions := map[string]uint64{}
	ids := map[eventstore.ID]struct{}{}
	onRead := func(n int) {
		read += uint64(n)
		if progress != nil && read>>20 != (read-uint64(n))>>20 {
			progress("check", read, 0)
		}
	}
	err := scanRecords(r, onRead, func(line int, rec *Record, env *eventstore.Envelope) error {
		bad := func(format string, args ...any) error {
			return &ImportError{Line: line, Position: rec.Position, Reason: fmt.Sprintf(format, args...)}
		}
		if count%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := eventstore.VerifyLink(count, prev, env); err != nil {
			var ce *eventstore.CorruptError
			if errors.As(err, &ce) {
				if count == 0 && env.Position != 1 {
					return bad("the export starts at position %d; only an export from position 1 can be imported", env.Position)
				}
				return &ImportError{Line: line, Position: ce.Position,
					Reason: ce.Reason + " (the export was changed, or is not a complete export)"}
			}
			return bad("%v", err)
		}
		if want := versions[env.StreamID] + 1; env.StreamVersion != want {
			return bad("stream %s version %d, want %d (versions must be contiguous)", env.StreamID, env.StreamVersion, want)
		}
		versions[env.StreamID] = env.StreamVersion
		if _, dup := ids[env.EventID]; dup {
			return bad("event id %s appears twice", env.EventID)
		}
		ids[env.EventID] = struct{}{}
		if err := eventstore.ValidateAppend(env.StreamID, eventstore.Any, []eventstore.EventData{eventData(env)}); err != nil {
			return bad("%v", err)
		}
		if err := samePayload(rec, env.Payload); err != nil {
			return bad("%v", err)
		}
		count++
		prev = env.Hash
		return nil
	})
	if err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, fmt.Errorf("import: no events in the export")
	}
	return count, nil
}

// samePayload checks that the JSON payload of a record says what its msgpack
// bytes say, so an edit to one is not missed because import reads the other.
func samePayload(rec *Record, msgpack []byte) error {
	doc := rec.Payload
	want, err := payloadJSON(msgpack)
	if err != nil {
		if rec.PayloadError == "" || (len(doc) > 0 && string(doc) != "null") {
			return fmt.Errorf("payload_msgpack does not decode (%v), yet payload_error does not say so", err)
		}
		return nil
	}
	if bytes.Equal(doc, want) {
		return nil
	}
	// Not byte-equal (another exporter's spacing or key order): compare values.
	a, errA := decodeJSON(doc)
	b, errB := decodeJSON(want)
	if errA != nil || errB != nil || !jsonEqual(a, b) {
		return errors.New("payload does not match payload_msgpack")
	}
	return nil
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			if w, ok := bm[k]; !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], bs[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func eventData(env *eventstore.Envelope) eventstore.EventData {
	return eventstore.EventData{
		ID: env.EventID, Type: env.Type, SchemaVersion: env.SchemaVersion, Time: env.Time, Actor: env.Actor,
		CorrelationID: env.CorrelationID, CausationID: env.CausationID, Payload: env.Payload,
	}
}

// importer is Import's second pass: it gathers records into AppendMany
// batches, one request per run of consecutive events on one stream.
type importer struct {
	ctx   context.Context
	store eventstore.Store
	opts  ImportOptions
	total uint64

	want  []eventstore.Envelope // the batch, in position order
	lines []int
	done  uint64
	last  eventstore.Head
}

func (im *importer) add(line int, env *eventstore.Envelope) error {
	im.want = append(im.want, *env)
	im.lines = append(im.lines, line)
	if len(im.want) >= im.opts.BatchEvents {
		return im.flush()
	}
	return nil
}

func (im *importer) flush() error {
	if len(im.want) == 0 {
		return nil
	}
	var reqs []eventstore.AppendRequest
	var starts []int // index in want of each request's first event
	for i := range im.want {
		e := &im.want[i]
		if n := len(reqs); n > 0 && reqs[n-1].Stream == e.StreamID {
			reqs[n-1].Events = append(reqs[n-1].Events, eventData(e))
			continue
		}
		reqs = append(reqs, eventstore.AppendRequest{Stream: e.StreamID, Expected: eventstore.Exact(e.StreamVersion - 1),
			Events: []eventstore.EventData{eventData(e)}})
		starts = append(starts, i)
	}
	out, err := im.store.AppendMany(im.ctx, reqs)
	if err != nil {
		first := &im.want[0]
		return &ImportError{Line: im.lines[0], Position: first.Position, Reason: fmt.Sprintf("append: %v", err)}
	}
	for k, o := range out {
		i := starts[k]
		e := &im.want[i]
		switch {
		case o.Err != nil:
			return &ImportError{Line: im.lines[i], Position: e.Position, Reason: fmt.Sprintf("append: %v", o.Err)}
		case o.Result.Duplicate || o.Result.FirstPosition != e.Position:
			return &ImportError{Line: im.lines[i], Position: e.Position,
				Reason: fmt.Sprintf("the store put the event at position %d", o.Result.FirstPosition)}
		}
	}
	// Read the batch back: every envelope must be the exported one.
	first := im.want[0].Position
	got, err := im.store.ReadAll(im.ctx, first, len(im.want))
	if err != nil {
		return fmt.Errorf("import: read back from %d: %w", first, err)
	}
	for i := range im.want {
		w := &im.want[i]
		if i >= len(got) {
			return &ImportError{Line: im.lines[i], Position: w.Position, Reason: "missing from the store after the append"}
		}
		if reason := envelopeDiff(&got[i], w); reason != "" {
			return &ImportError{Line: im.lines[i], Position: w.Position, Reason: reason}
		}
	}
	last := &im.want[len(im.want)-1]
	im.last = eventstore.Head{Position: last.Position, Hash: last.Hash}
	im.done += uint64(len(im.want))
	im.want, im.lines = im.want[:0], im.lines[:0]
	if im.opts.Progress != nil {
		im.opts.Progress("import", im.done, im.total)
	}
	return im.ctx.Err()
}

// envelopeDiff names the first field in which the stored envelope got
// differs from the exported one want, "" when they are equal.
func envelopeDiff(got, want *eventstore.Envelope) string {
	switch {
	case got.Hash != want.Hash:
		return fmt.Sprintf("the store computed hash %s, the export says %s", got.Hash, want.Hash)
	case got.Position != want.Position:
		return fmt.Sprintf("stored at position %d", got.Position)
	case got.StreamID != want.StreamID || got.StreamVersion != want.StreamVersion:
		return fmt.Sprintf("stored as %s version %d", got.StreamID, got.StreamVersion)
	case got.EventID != want.EventID:
		return fmt.Sprintf("stored with event id %s", got.EventID)
	case !got.Time.Equal(want.Time):
		return fmt.Sprintf("stored with time %s", got.Time.Format(NanoTimeFormat))
	case got.PrevHash != want.PrevHash:
		return fmt.Sprintf("stored with prev hash %s", got.PrevHash)
	case !bytes.Equal(got.Payload, want.Payload):
		return "stored with a different payload"
	case got.Type != want.Type || got.SchemaVersion != want.SchemaVersion || got.Actor != want.Actor ||
		got.CorrelationID != want.CorrelationID || got.CausationID != want.CausationID:
		return "stored with different metadata"
	}
	return ""
}
