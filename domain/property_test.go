package domain_test

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hodei-jobs/hodei/domain"
)

var (
	propSeed  = flag.Uint64("prop.seed", 0, "first seed of the property tests (0: fixed default)")
	propRuns  = flag.Int("prop.runs", 300, "random command sequences per property test (50 with -short)")
	propSteps = flag.Int("prop.steps", 80, "commands per sequence")
)

// equate treats nil and empty maps and slices alike: encoders differ there,
// and the domain gives them the same meaning.
var equate = cmpopts.EquateEmpty()

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestJobRandomCommands drives one job with random, often wrong, commands and
// checks after every step that no invalid transition was decided and the
// invariants hold; at the end, that folding is deterministic across encoders.
func TestJobRandomCommands(t *testing.T) {
	terminalSeen, produced := 0, map[string]int{}
	for run := range runs() {
		seed := *propSeed + uint64(run)
		r := rand.New(rand.NewPCG(seed, 0x4a6f62))
		var (
			job     domain.Job
			history []domain.Event
			now     = t0
		)
		for step := range *propSteps {
			now = now.Add(time.Duration(r.IntN(20)) * time.Second)
			c := randJobCommand(r, job, now, step)
			before := mustJSON(job)
			events, err := job.Decide(c)
			if after := mustJSON(job); after != before {
				t.Fatalf("seed %d step %d: Decide(%#v) changed the job:\n%s\n%s", seed, step, c, before, after)
			}
			if err != nil {
				if len(events) != 0 {
					t.Fatalf("seed %d step %d: Decide(%#v) returned events and error %v", seed, step, c, err)
				}
				if d := describeError(err); d[:12] == "UNCLASSIFIED" {
					t.Fatalf("seed %d step %d: Decide(%#v) = %v, want a domain sentinel", seed, step, c, err)
				}
				continue
			}
			if job.Status.Terminal() && len(events) > 0 {
				t.Fatalf("seed %d step %d: Decide(%#v) on a %s job = %v, want nothing after a terminal state",
					seed, step, c, job.Status, events)
			}
			if err := checkTransitions(job, events); err != nil {
				t.Fatalf("seed %d step %d: Decide(%#v): %v", seed, step, c, err)
			}
			for _, e := range events {
				produced[e.EventType()]++
			}
			history = append(history, events...)
			job = domain.Fold(job, events)
			if err := checkJobInvariants(history, job); err != nil {
				t.Fatalf("seed %d step %d after %#v: %v\nhistory: %v", seed, step, c, err, typesOf(history))
			}
		}
		if job.Status.Terminal() {
			terminalSeen++
		}
		checkFoldDeterministic(t, seed, history, job)
	}
	// The generator must reach every event and mostly end, or the test proves
	// little.
	if terminalSeen < runs()/2 {
		t.Errorf("only %d of %d runs reached a terminal state; the generator needs tuning", terminalSeen, runs())
	}
	for _, e := range domain.Events() {
		if name := e.EventType(); name[:4] == "job." && produced[name] == 0 {
			t.Errorf("no run produced %s; the generator needs tuning", name)
		}
	}
	t.Logf("events produced: %v", produced)
}

func runs() int {
	if testing.Short() {
		return min(*propRuns, 50)
	}
	return *propRuns
}

// TestWorkerRandomCommands is the same for a worker.
func TestWorkerRandomCommands(t *testing.T) {
	for run := range runs() {
		seed := *propSeed + uint64(run)
		r := rand.New(rand.NewPCG(seed, 0x576f726b))
		var (
			w       domain.Worker
			history []domain.Event
			now     = t0
		)
		for step := range *propSteps / 2 {
			now = now.Add(time.Duration(r.IntN(20)) * time.Second)
			c := randWorkerCommand(r, w, now, step)
			before := mustJSON(w)
			events, err := w.Decide(c)
			if after := mustJSON(w); after != before {
				t.Fatalf("seed %d step %d: Decide(%#v) changed the worker:\n%s\n%s", seed, step, c, before, after)
			}
			if err != nil {
				if len(events) != 0 || describeError(err)[:12] == "UNCLASSIFIED" {
					t.Fatalf("seed %d step %d: Decide(%#v) = %v, %v", seed, step, c, events, err)
				}
				continue
			}
			if w.Status == domain.WorkerStatusDeregistered && len(events) > 0 {
				t.Fatalf("seed %d step %d: events after deregistration: %v", seed, step, events)
			}
			history = append(history, events...)
			w = domain.Fold(w, events)
			if err := checkWorkerInvariants(history, w); err != nil {
				t.Fatalf("seed %d step %d after %#v: %v", seed, step, c, err)
			}
		}
		checkFoldDeterministic(t, seed, history, w)
	}
}

var workers = []string{"w1", "w2", "w3"}

func randJobCommand(r *rand.Rand, j domain.Job, now time.Time, step int) domain.JobCommand {
	if step == 0 || r.IntN(50) == 0 {
		spec := domain.JobSpec{Name: "build", Script: "make test", MaxAttempts: 1 + r.IntN(4)}
		if r.IntN(2) == 0 {
			spec.Timeout = time.Duration(10+r.IntN(60)) * time.Second
		}
		return domain.Submit{JobID: "j1", Spec: spec, Submitter: "alice", At: now}
	}
	// Mostly the right worker and attempt, sometimes a stale or wrong one.
	worker := j.Worker
	if worker == "" || r.IntN(6) == 0 {
		worker = workers[r.IntN(len(workers))]
	}
	attempt := j.Attempt
	switch r.IntN(8) {
	case 0:
		attempt--
	case 1:
		attempt++
	}
	if attempt == 0 {
		attempt = 1
	}
	switch r.IntN(20) {
	case 0:
		return domain.Park{Reason: []string{"no worker with label gpu=true", "no capacity"}[r.IntN(2)], At: now}
	case 1:
		return domain.Unpark{At: now}
	case 2, 3, 4:
		return domain.Schedule{WorkerID: workers[r.IntN(len(workers))], AcceptBy: now.Add(30 * time.Second), At: now}
	case 5, 6:
		return domain.Accept{WorkerID: worker, Attempt: attempt, At: now}
	case 7, 8, 9:
		return domain.Start{WorkerID: worker, Attempt: attempt, At: now}
	case 10, 11:
		f := domain.Finish{WorkerID: worker, Attempt: attempt, Runtime: time.Second, At: now}
		switch r.IntN(4) {
		case 0:
			f.ExitCode = 1
		case 1:
			f.ExitCode, f.Signal = -1, "SIGKILL"
		case 2:
			f.TimedOut, f.ExitCode, f.Signal = j.Spec.Timeout > 0, -1, "SIGTERM"
		}
		return f
	case 12, 13, 14:
		reasons := []string{domain.ReasonAgentLost, domain.ReasonAssignFailed, domain.ReasonRejected}
		return domain.FailAttempt{WorkerID: worker, Attempt: attempt, Reason: reasons[r.IntN(len(reasons))], At: now}
	case 15:
		if r.IntN(4) == 0 { // rarely, or most runs end cancelled
			return domain.Cancel{By: "bob", Reason: "not needed", At: now}
		}
	case 16, 17:
		return domain.TimeOut{At: now.Add(time.Duration(r.IntN(90)) * time.Second)}
	}
	return domain.Start{WorkerID: worker, Attempt: attempt, At: now}
}

func randWorkerCommand(r *rand.Rand, w domain.Worker, now time.Time, step int) domain.WorkerCommand {
	info := domain.WorkerInfo{
		Name: "host-1", Labels: map[string]string{"arch": []string{"amd64", "arm64"}[r.IntN(2)]},
		Capacity:     domain.Resources{Slots: int64(1 + r.IntN(8)), CPUMillis: 4000, MemoryBytes: 8 << 30},
		AgentVersion: "0.1.0", ProtocolVersion: 1,
	}
	if step == 0 || r.IntN(30) == 0 {
		return domain.Register{WorkerID: "w1", Info: info, At: now}
	}
	switch r.IntN(12) {
	case 0, 1:
		return domain.Reconnect{Info: info, At: now}
	case 2, 3:
		return domain.Drain{By: "ops", Reason: "upgrade", At: now}
	case 4, 5:
		return domain.Resume{By: "ops", At: now}
	case 6, 7, 8:
		return domain.MarkLost{LastSeen: now.Add(-15 * time.Second), At: now}
	case 9:
		return domain.Deregister{Reason: "removed", At: now}
	case 10:
		cert := domain.CertRef{Serial: "1f", NotAfter: now.Add(24 * time.Hour)}
		if r.IntN(2) == 0 {
			return domain.Enrol{TokenID: "0123456789abcdef", Cert: cert, IdentityExpiresAt: now.Add(15 * time.Minute), At: now}
		}
		return domain.RenewIdentity{Cert: cert, IdentityExpiresAt: now.Add(15 * time.Minute), At: now}
	case 11:
		if r.IntN(3) == 0 {
			return domain.RevokeIdentity{By: "ops", Reason: "stolen laptop", At: now}
		}
	}
	return domain.Reconnect{Info: info, At: now}
}

// jobTransitions is the reference state machine: which events may follow
// which status. It is written out independently of the decider.
var jobTransitions = map[domain.JobStatus][]string{
	"": {domain.TypeJobSubmitted},
	domain.JobStatusQueued: {domain.TypeJobParked, domain.TypeJobUnparked, domain.TypeJobScheduled,
		domain.TypeJobCancelled},
	domain.JobStatusScheduled: {domain.TypeJobAccepted, domain.TypeJobStarted, domain.TypeJobCancelRequested,
		domain.TypeJobRequeued, domain.TypeJobSucceeded, domain.TypeJobFailed, domain.TypeJobCancelled,
		domain.TypeJobTimedOut},
	domain.JobStatusAccepted: {domain.TypeJobStarted, domain.TypeJobCancelRequested, domain.TypeJobRequeued,
		domain.TypeJobSucceeded, domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut},
	domain.JobStatusRunning: {domain.TypeJobCancelRequested, domain.TypeJobRequeued, domain.TypeJobSucceeded,
		domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut},
}

var terminalTypes = []string{domain.TypeJobSucceeded, domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut}

// checkTransitions checks events decided on state j against the reference
// state machine, and that reports name the running attempt and its worker.
func checkTransitions(j domain.Job, events []domain.Event) error {
	for _, e := range events {
		if !slices.Contains(jobTransitions[j.Status], e.EventType()) {
			return fmt.Errorf("invalid transition: %s after status %q", e.EventType(), j.Status)
		}
		if j.Exists() && e.StreamID() != domain.JobStream(j.ID) {
			return fmt.Errorf("%s on stream %s, want %s", e.EventType(), e.StreamID(), domain.JobStream(j.ID))
		}
		attempt, worker := attemptOf(e)
		switch {
		case e.EventType() == domain.TypeJobScheduled:
			if attempt != j.Attempt+1 {
				return fmt.Errorf("job.scheduled attempt %d after attempt %d", attempt, j.Attempt)
			}
		case j.Status.Active() && worker != "" && (attempt != j.Attempt || worker != j.Worker):
			return fmt.Errorf("%s names attempt %d on %s, running is %d on %s", e.EventType(), attempt, worker, j.Attempt, j.Worker)
		}
		j = j.Apply(e)
	}
	return nil
}

// attemptOf returns the attempt and worker an event names ("" if none).
func attemptOf(e domain.Event) (uint32, string) {
	v := reflect.ValueOf(e)
	a, w := v.FieldByName("Attempt"), v.FieldByName("WorkerID")
	if !a.IsValid() || !w.IsValid() {
		return 0, ""
	}
	return uint32(a.Uint()), w.String()
}

// checkJob checks the job invariants of state j folded from history,
// including that a fresh fold of history gives j.
func checkJob(history []domain.Event, j domain.Job) error {
	if diff := cmp.Diff(domain.Fold(domain.Job{}, history), j, equate); diff != "" {
		return fmt.Errorf("state differs from a fresh fold of its history:\n%s", diff)
	}
	return checkJobInvariants(history, j)
}

// checkJobInvariants is checkJob without the fresh fold.
func checkJobInvariants(history []domain.Event, j domain.Job) error {
	if j.Version != uint64(len(history)) {
		return fmt.Errorf("version %d after %d events", j.Version, len(history))
	}
	if j.Status.Active() != (j.Worker != "") {
		return fmt.Errorf("status %s with worker %q: a worker is assigned exactly while active", j.Status, j.Worker)
	}
	if int(j.Attempt) != len(j.Attempts) {
		return fmt.Errorf("attempt %d with %d attempts recorded", j.Attempt, len(j.Attempts))
	}
	if j.Exists() && int(j.Attempt) > j.Spec.MaxAttempts {
		return fmt.Errorf("attempt %d beyond max attempts %d", j.Attempt, j.Spec.MaxAttempts)
	}
	for i, a := range j.Attempts {
		last := i == len(j.Attempts)-1
		switch {
		case a.Number != uint32(i+1):
			return fmt.Errorf("attempts[%d] is number %d", i, a.Number)
		case !last && a.Result == "":
			return fmt.Errorf("attempt %d still open while attempt %d exists", a.Number, len(j.Attempts))
		case last && (a.Result == "") != j.Status.Active():
			return fmt.Errorf("last attempt result %q with status %s", a.Result, j.Status)
		case last && j.Status.Active() && a.Worker != j.Worker:
			return fmt.Errorf("attempt %d on %s, job says %s", a.Number, a.Worker, j.Worker)
		}
	}
	terminals, scheduled := 0, uint32(0)
	for i, e := range history {
		if e.StreamID() != domain.JobStream(j.ID) {
			return fmt.Errorf("event %d (%s) on stream %s", i, e.EventType(), e.StreamID())
		}
		if slices.Contains(terminalTypes, e.EventType()) {
			terminals++
			if i != len(history)-1 {
				return fmt.Errorf("%s at %d is followed by %s", e.EventType(), i, typesOf(history[i+1:]))
			}
		}
		if s, ok := e.(domain.JobScheduled); ok {
			if s.Attempt != scheduled+1 {
				return fmt.Errorf("attempt %d scheduled after %d", s.Attempt, scheduled)
			}
			scheduled = s.Attempt
		}
	}
	if want := map[bool]int{true: 1, false: 0}[j.Status.Terminal()]; terminals != want {
		return fmt.Errorf("%d terminal events with status %s", terminals, j.Status)
	}
	return nil
}

// checkWorker checks the worker invariants of state w folded from history,
// including that a fresh fold of history gives w.
func checkWorker(history []domain.Event, w domain.Worker) error {
	if diff := cmp.Diff(domain.Fold(domain.Worker{}, history), w, equate); diff != "" {
		return fmt.Errorf("state differs from a fresh fold of its history:\n%s", diff)
	}
	return checkWorkerInvariants(history, w)
}

// checkWorkerInvariants is checkWorker without the fresh fold.
func checkWorkerInvariants(history []domain.Event, w domain.Worker) error {
	if w.Version != uint64(len(history)) {
		return fmt.Errorf("version %d after %d events", w.Version, len(history))
	}
	for i, e := range history {
		if e.StreamID() != domain.WorkerStream(w.ID) {
			return fmt.Errorf("event %d (%s) on stream %s", i, e.EventType(), e.StreamID())
		}
		if _, ok := e.(domain.WorkerDeregistered); ok && i != len(history)-1 {
			return fmt.Errorf("worker.deregistered at %d is followed by %s", i, typesOf(history[i+1:]))
		}
		if _, ok := e.(domain.WorkerRegistered); ok && i != 0 {
			return fmt.Errorf("worker.registered at %d", i)
		}
		if _, ok := e.(domain.WorkerIdentityRevoked); ok {
			for _, later := range history[i+1:] {
				switch later.(type) {
				case domain.WorkerEnrolled, domain.WorkerIdentityRenewed, domain.WorkerIdentityRevoked:
					return fmt.Errorf("worker.identity_revoked at %d is followed by %s", i, later.EventType())
				}
			}
		}
	}
	if w.Schedulable() && (w.Status != domain.WorkerStatusOnline || w.Draining) {
		return fmt.Errorf("schedulable while %s, draining=%v", w.Status, w.Draining)
	}
	return nil
}

// checkFoldDeterministic folds history twice and after a round trip through
// JSON, gob and msgpack (with the event store codec's settings), and expects
// the same state every time.
func checkFoldDeterministic[S interface{ Apply(domain.Event) S }](t *testing.T, seed uint64, history []domain.Event, want S) {
	t.Helper()
	var zero S
	for name, events := range map[string][]domain.Event{
		"again":   history,
		"json":    roundTrip(t, history, jsonRoundTrip),
		"gob":     roundTrip(t, history, gobRoundTrip),
		"msgpack": roundTrip(t, history, msgpackRoundTrip),
	} {
		if diff := cmp.Diff(want, domain.Fold(zero, events), equate); diff != "" {
			t.Fatalf("seed %d: fold after %s differs (-want +got):\n%s", seed, name, diff)
		}
	}
}

func roundTrip(t *testing.T, events []domain.Event, f func(domain.Event, any) error) []domain.Event {
	t.Helper()
	out := make([]domain.Event, len(events))
	for i, e := range events {
		v := reflect.New(reflect.TypeOf(e))
		if err := f(e, v.Interface()); err != nil {
			t.Fatalf("round trip %s: %v", e.EventType(), err)
		}
		out[i] = v.Elem().Interface().(domain.Event)
	}
	return out
}

func jsonRoundTrip(e domain.Event, dst any) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

func gobRoundTrip(e domain.Event, dst any) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(e); err != nil {
		return err
	}
	return gob.NewDecoder(&buf).Decode(dst)
}

func msgpackRoundTrip(e domain.Event, dst any) error {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	enc.SetSortMapKeys(true)
	if err := enc.Encode(e); err != nil {
		return err
	}
	dec := msgpack.NewDecoder(&buf)
	dec.SetCustomStructTag("json")
	return dec.Decode(dst)
}

// deepCopy copies v through JSON, so later changes to shared maps or slices
// show up in a comparison.
func deepCopy[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// mustJSON renders v, so a later change to maps or slices it shares shows.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func typesOf(events []domain.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.EventType())
	}
	return out
}

// TestEventsList checks the registration list: one zero struct per type,
// unique wire names with the aggregate's prefix, schema version 1, a json tag
// on every field, and every type the deciders produce is listed.
func TestEventsList(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range domain.Events() {
		name := e.EventType()
		typ := reflect.TypeOf(e)
		switch {
		case typ.Kind() != reflect.Struct:
			t.Errorf("%s: %s is not a struct", name, typ)
		case seen[name]:
			t.Errorf("%s listed twice", name)
		case e.EventSchemaVersion() != 1:
			t.Errorf("%s: schema version %d, want 1", name, e.EventSchemaVersion())
		case !reflect.ValueOf(e).IsZero():
			t.Errorf("%s: not a zero value", name)
		}
		seen[name] = true
		prefix := "worker."
		switch {
		case strings.HasPrefix(typ.Name(), "Job"):
			prefix = "job."
		case strings.HasPrefix(typ.Name(), "Instance"):
			prefix = "instance."
		}
		if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
			t.Errorf("%s (%s): want prefix %q", name, typ.Name(), prefix)
		}
		for f := range typ.Fields() {
			if f.Tag.Get("json") == "" {
				t.Errorf("%s: field %s has no json tag", name, f.Name)
			}
		}
	}
	if len(seen) != len(eventTypes) {
		t.Errorf("Events() has %d types, eventTypes %d", len(seen), len(eventTypes))
	}
}

// TestErrorsClassify checks the typed errors' Is relations.
func TestErrorsClassify(t *testing.T) {
	terminal := &domain.TransitionError{Aggregate: "job", ID: "j1", From: "succeeded", Command: "finish"}
	if !errors.Is(terminal, domain.ErrJobTerminal) || !errors.Is(terminal, domain.ErrInvalidTransition) {
		t.Errorf("%v: want ErrJobTerminal and ErrInvalidTransition", terminal)
	}
	queued := &domain.TransitionError{Aggregate: "job", ID: "j1", From: "queued", Command: "time-out"}
	if errors.Is(queued, domain.ErrJobTerminal) {
		t.Errorf("%v: is ErrJobTerminal", queued)
	}
	stale := &domain.StaleAttemptError{JobID: "j1", Worker: "w1", Attempt: 1, Current: 2, Assigned: "w1"}
	if !errors.Is(stale, domain.ErrStaleAttempt) || errors.Is(stale, domain.ErrNotAssigned) {
		t.Errorf("%v: want ErrStaleAttempt only", stale)
	}
	forged := &domain.StaleAttemptError{JobID: "j1", Worker: "w2", Attempt: 1, Current: 1, Assigned: "w1"}
	if !errors.Is(forged, domain.ErrStaleAttempt) || !errors.Is(forged, domain.ErrNotAssigned) {
		t.Errorf("%v: want ErrStaleAttempt and ErrNotAssigned", forged)
	}
	if _, err := (domain.Job{}).Decide(&domain.Submit{JobID: "j1", At: t0}); !errors.Is(err, domain.ErrInvalidCommand) {
		t.Errorf("Decide(pointer command) = %v, want ErrInvalidCommand", err)
	}
	var fe *domain.FieldError
	if err := (domain.JobSpec{Name: "x"}).Validate(); !errors.As(err, &fe) || fe.Field != "script" || !errors.Is(err, domain.ErrInvalidJobSpec) {
		t.Errorf("Validate() = %v, want a *FieldError for script", err)
	}
}
