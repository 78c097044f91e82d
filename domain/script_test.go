package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hodei-jobs/hodei/domain"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the then lines of testdata/*.txt from actual output")

// TestScripts runs the given/when/then scripts in testdata. Format, one
// directive per line (a line starting with a space or tab continues the one
// before it; '#' lines and blank lines are kept as they are):
//
//	given <event type> <json>    fold an event into the job or worker
//	when <command> <json>        decide a command, then fold its events
//	show job|worker              print a summary of the state
//	then ...                     expected output of the when/show above it
//
// Output lines are "then <event type> <json>" per event, "then no events",
// or "then error <sentinels>: <message>". With -rewrite the then lines are
// replaced by the actual output, to be reviewed as a diff.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := runScript(t, file, string(want))
			if *rewrite {
				if got != string(want) {
					if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					t.Logf("rewrote %s", file)
				}
				return
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s: output differs (-want +got); run go test ./domain -run TestScripts -rewrite to accept:\n%s", file, diff)
			}
		})
	}
}

// script holds the aggregates of one script: one job and one worker.
type script struct {
	t          *testing.T
	file       string
	job        domain.Job
	jobEvents  []domain.Event
	worker     domain.Worker
	workerEvts []domain.Event
}

func runScript(t *testing.T, file, text string) string {
	s := &script{t: t, file: file}
	var out strings.Builder
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		start := i + 1
		// Join continuation lines.
		for i+1 < len(lines) && lines[i+1] != "" && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			line += "\n" + lines[i]
		}
		directive, rest := cutSpace(line)
		switch {
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			out.WriteString(line + "\n")
		case directive == "then":
			// Old output: dropped, regenerated below its when/show.
		case directive == "given":
			out.WriteString(line + "\n")
			s.given(start, rest)
		case directive == "when":
			out.WriteString(line + "\n")
			for _, o := range s.when(start, rest) {
				out.WriteString("then " + o + "\n")
			}
		case directive == "show":
			out.WriteString(line + "\n")
			out.WriteString("then " + s.show(start, strings.TrimSpace(rest)) + "\n")
		default:
			t.Fatalf("%s:%d: unknown directive %q", file, start, directive)
		}
	}
	return out.String()
}

func (s *script) fatalf(line int, format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, line, fmt.Sprintf(format, args...))
}

// eventTypes maps wire names to Go types, from domain.Events.
var eventTypes = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, e := range domain.Events() {
		m[e.EventType()] = reflect.TypeOf(e)
	}
	return m
}()

var jobCommands = typesByName(
	domain.Submit{}, domain.Park{}, domain.Unpark{}, domain.Schedule{}, domain.Accept{},
	domain.Start{}, domain.Finish{}, domain.FailAttempt{}, domain.Cancel{}, domain.TimeOut{},
)

var workerCommands = typesByName(
	domain.Register{}, domain.Reconnect{}, domain.Drain{}, domain.Resume{},
	domain.MarkLost{}, domain.Deregister{},
	domain.Enrol{}, domain.RenewIdentity{}, domain.RevokeIdentity{},
)

func typesByName(cmds ...interface{ CommandName() string }) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, c := range cmds {
		m[c.CommandName()] = reflect.TypeOf(c)
	}
	return m
}

// decodeStrict decodes JSON into a new value of type t, rejecting unknown
// fields so a typo in a script fails loudly.
func decodeStrict(t reflect.Type, data string) (any, error) {
	v := reflect.New(t)
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return v.Elem().Interface(), nil
}

func (s *script) given(line int, rest string) {
	name, data := cutSpace(rest)
	typ, ok := eventTypes[name]
	if !ok {
		s.fatalf(line, "unknown event type %q", name)
	}
	v, err := decodeStrict(typ, data)
	if err != nil {
		s.fatalf(line, "%s: %v", name, err)
	}
	s.fold(line, v.(domain.Event))
}

func (s *script) fold(line int, e domain.Event) {
	switch {
	case strings.HasPrefix(e.EventType(), "job."):
		s.jobEvents = append(s.jobEvents, e)
		s.job = s.job.Apply(e)
		if err := checkJob(s.jobEvents, s.job); err != nil {
			s.fatalf(line, "job invariant broken: %v", err)
		}
	default:
		s.workerEvts = append(s.workerEvts, e)
		s.worker = s.worker.Apply(e)
		if err := checkWorker(s.workerEvts, s.worker); err != nil {
			s.fatalf(line, "worker invariant broken: %v", err)
		}
	}
}

func (s *script) when(line int, rest string) []string {
	name, data := cutSpace(rest)
	if data == "" {
		data = "{}"
	}
	var events []domain.Event
	var err error
	if typ, ok := jobCommands[name]; ok {
		v, derr := decodeStrict(typ, data)
		if derr != nil {
			s.fatalf(line, "%s: %v", name, derr)
		}
		before := deepCopy(s.job)
		events, err = s.job.Decide(v.(domain.JobCommand))
		if diff := cmp.Diff(before, s.job); diff != "" {
			s.fatalf(line, "Decide changed the job (-before +after):\n%s", diff)
		}
		if err == nil {
			if bad := checkTransitions(s.job, events); bad != nil {
				s.fatalf(line, "%v", bad)
			}
		}
	} else if typ, ok := workerCommands[name]; ok {
		v, derr := decodeStrict(typ, data)
		if derr != nil {
			s.fatalf(line, "%s: %v", name, derr)
		}
		before := deepCopy(s.worker)
		events, err = s.worker.Decide(v.(domain.WorkerCommand))
		if diff := cmp.Diff(before, s.worker); diff != "" {
			s.fatalf(line, "Decide changed the worker (-before +after):\n%s", diff)
		}
	} else {
		s.fatalf(line, "unknown command %q", name)
	}
	if err != nil {
		if len(events) != 0 {
			s.fatalf(line, "Decide returned events and an error")
		}
		return []string{"error " + describeError(err)}
	}
	if len(events) == 0 {
		return []string{"no events"}
	}
	var out []string
	for _, e := range events {
		b, merr := json.Marshal(e)
		if merr != nil {
			s.fatalf(line, "marshal %s: %v", e.EventType(), merr)
		}
		out = append(out, e.EventType()+" "+string(b))
		s.fold(line, e)
	}
	return out
}

func (s *script) show(line int, what string) string {
	var b bytes.Buffer
	kv := func(k string, v any) { fmt.Fprintf(&b, " %s=%v", k, v) }
	switch what {
	case "job":
		j := s.job
		if !j.Exists() {
			return "job does not exist"
		}
		b.WriteString("job")
		kv("status", j.Status)
		kv("attempt", fmt.Sprintf("%d/%d", j.Attempt, j.Spec.MaxAttempts))
		if j.Worker != "" {
			kv("worker", j.Worker)
		}
		if j.Parked != "" {
			kv("parked", fmt.Sprintf("%q", j.Parked))
		}
		if j.CancelRequested {
			kv("cancel_requested", true)
		}
		if !j.Deadline.IsZero() {
			kv("deadline", j.Deadline.Format("15:04:05"))
		}
		if j.Status.Terminal() {
			kv("exit", j.ExitCode)
			if j.Signal != "" {
				kv("signal", j.Signal)
			}
			kv("reason", fmt.Sprintf("%q", j.Reason))
		}
		kv("version", j.Version)
		for _, a := range j.Attempts {
			fmt.Fprintf(&b, " #%d:%s:%s", a.Number, a.Worker, orDash(a.Result))
		}
	case "worker":
		w := s.worker
		if !w.Exists() {
			return "worker does not exist"
		}
		b.WriteString("worker")
		kv("status", w.Status)
		kv("schedulable", w.Schedulable())
		if w.Draining {
			kv("draining", fmt.Sprintf("%q", w.DrainReason))
		}
		if w.LostReason != "" {
			kv("lost", fmt.Sprintf("%q", w.LostReason))
		}
		if w.Cert.Serial != "" {
			kv("cert", w.Cert.Serial)
		}
		if w.Revoked() {
			kv("revoked", fmt.Sprintf("%q", w.RevokedReason))
		}
		kv("slots", w.Info.Capacity.Slots)
		kv("version", w.Version)
	default:
		s.fatalf(line, "show %q: want job or worker", what)
	}
	return b.String()
}

// cutSpace splits s at its first run of white space, trimming both parts.
func cutSpace(s string) (head, tail string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t\n")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sentinels are the domain's error values, in the order describeError lists
// them.
var sentinels = []struct {
	name string
	err  error
}{
	{"ErrNotFound", domain.ErrNotFound},
	{"ErrAlreadyExists", domain.ErrAlreadyExists},
	{"ErrInvalidTransition", domain.ErrInvalidTransition},
	{"ErrJobTerminal", domain.ErrJobTerminal},
	{"ErrWorkerDeregistered", domain.ErrWorkerDeregistered},
	{"ErrStaleAttempt", domain.ErrStaleAttempt},
	{"ErrNotAssigned", domain.ErrNotAssigned},
	{"ErrNotDue", domain.ErrNotDue},
	{"ErrIdentityRevoked", domain.ErrIdentityRevoked},
	{"ErrInvalidJobSpec", domain.ErrInvalidJobSpec},
	{"ErrInvalidWorkerInfo", domain.ErrInvalidWorkerInfo},
	{"ErrInvalidCommand", domain.ErrInvalidCommand},
}

// describeError lists the sentinels err matches, then its message.
func describeError(err error) string {
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		names = []string{"UNCLASSIFIED"}
	}
	return strings.Join(names, ",") + ": " + err.Error()
}
