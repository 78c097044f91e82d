package domain_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hodei-jobs/hodei/domain"
)

func validSpec() domain.JobSpec {
	return domain.JobSpec{Name: "build", Script: "make test"}
}

// TestValidateLimits covers the size limits, which are too big to write into
// a script.
func TestValidateLimits(t *testing.T) {
	bigEnv := map[string]string{}
	for i := range 40 {
		bigEnv[fmt.Sprintf("V%d", i)] = strings.Repeat("x", 4<<10)
	}
	manyLabels := map[string]string{}
	for i := range domain.MaxLabels + 1 {
		manyLabels[fmt.Sprintf("l%d", i)] = "x"
	}
	tests := []struct {
		name  string
		edit  func(*domain.JobSpec)
		field string // "" for valid
	}{
		{"valid", func(*domain.JobSpec) {}, ""},
		{"script at limit", func(s *domain.JobSpec) { s.Script = strings.Repeat("x", domain.MaxScriptBytes) }, ""},
		{"script over limit", func(s *domain.JobSpec) { s.Script = strings.Repeat("x", domain.MaxScriptBytes+1) }, "script"},
		{"script NUL", func(s *domain.JobSpec) { s.Script = "echo \x00" }, "script"},
		{"script not UTF-8", func(s *domain.JobSpec) { s.Script = "echo \xff" }, "script"},
		{"name control char", func(s *domain.JobSpec) { s.Name = "a\nb" }, "name"},
		{"name too long", func(s *domain.JobSpec) { s.Name = strings.Repeat("n", domain.MaxNameBytes+1) }, "name"},
		{"env too big", func(s *domain.JobSpec) { s.Env = bigEnv }, "env"},
		{"env value NUL", func(s *domain.JobSpec) { s.Env = map[string]string{"A": "\x00"} }, "env[A]"},
		{"env lower-case reserved", func(s *domain.JobSpec) { s.Env = map[string]string{"hodei_x": "1"} }, "env"},
		{"secret reserved", func(s *domain.JobSpec) { s.Secrets = map[string]string{"HODEI_T": "t"} }, "secrets"},
		{"secret empty name", func(s *domain.JobSpec) { s.Secrets = map[string]string{"T": ""} }, "secrets[T]"},
		{"too many labels", func(s *domain.JobSpec) { s.Labels = manyLabels }, "labels"},
		{"label prefix", func(s *domain.JobSpec) { s.Labels = map[string]string{"hodei.dev/arch": "amd64"} }, ""},
		{"label bad prefix", func(s *domain.JobSpec) { s.Labels = map[string]string{"Hodei.dev/arch": "amd64"} }, "labels"},
		{"label empty name", func(s *domain.JobSpec) { s.Labels = map[string]string{"hodei.dev/": "x"} }, "labels"},
		{"label empty value", func(s *domain.JobSpec) { s.Labels = map[string]string{"ssd": ""} }, ""},
		{"memory absurd", func(s *domain.JobSpec) { s.Resources.MemoryBytes = 1 << 50 }, "resources.memory_bytes"},
		{"priority low", func(s *domain.JobSpec) { s.Priority = -1 }, "priority"},
		{"timeout max", func(s *domain.JobSpec) { s.Timeout = domain.MaxTimeout }, ""},
		{"timeout too long", func(s *domain.JobSpec) { s.Timeout = domain.MaxTimeout + time.Second }, "timeout"},
		{"max attempts negative", func(s *domain.JobSpec) { s.MaxAttempts = -1 }, "max_attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.edit(&s)
			err := s.Validate()
			var fe *domain.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field == "":
			case !errors.As(err, &fe) || !errors.Is(err, domain.ErrInvalidJobSpec):
				t.Fatalf("Validate() = %v, want a *FieldError for %s", err, tt.field)
			case fe.Field != tt.field:
				t.Fatalf("Validate() = %v, field %q, want %q", err, fe.Field, tt.field)
			}
		})
	}
}

// TestLargestSubmitFits checks that a spec at every limit still fits in one
// event payload (1 MiB in the event store) with the codec's msgpack settings.
func TestLargestSubmitFits(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	spec := domain.JobSpec{
		Name:     strings.Repeat("n", domain.MaxNameBytes),
		Script:   strings.Repeat("x", domain.MaxScriptBytes),
		Env:      map[string]string{},
		Secrets:  map[string]string{},
		Labels:   map[string]string{},
		Selector: map[string]string{},
	}
	for i := range 16 {
		spec.Env[fmt.Sprintf("E%d", i)] = strings.Repeat("v", domain.MaxEnvBytes/16-4)
	}
	for i := range domain.MaxSecrets {
		spec.Secrets[fmt.Sprintf("S%d", i)] = long(fmt.Sprintf("s%d", i), 253)
	}
	for i := range domain.MaxLabels {
		key := long(fmt.Sprintf("p%d", i), 200) + "/" + long(fmt.Sprintf("k%d", i), 63)
		spec.Labels[key] = long("v", 63)
		spec.Selector[key] = long("v", 63)
	}
	if err := spec.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	events, err := domain.Job{}.Decide(domain.Submit{JobID: strings.Repeat("j", 128), Spec: spec,
		Submitter: strings.Repeat("u", 1024), At: t0})
	if err != nil {
		t.Fatalf("Decide(Submit) = %v", err)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	if err := enc.Encode(events[0]); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1<<20 {
		t.Errorf("largest job.submitted payload is %d bytes, want <= 1 MiB", buf.Len())
	}
	t.Logf("largest job.submitted payload: %d bytes", buf.Len())
}

// TestSubmitCopiesSpec checks the recorded spec shares no map with the
// caller's, so a caller reusing its maps cannot change history.
func TestSubmitCopiesSpec(t *testing.T) {
	spec := validSpec()
	spec.Env = map[string]string{"A": "1"}
	events, err := domain.Job{}.Decide(domain.Submit{JobID: "j1", Spec: spec, At: t0})
	if err != nil {
		t.Fatal(err)
	}
	spec.Env["A"] = "changed"
	if got := events[0].(domain.JobSubmitted).Spec.Env["A"]; got != "1" {
		t.Errorf("recorded env A = %q after the caller changed its map, want %q", got, "1")
	}
}

func TestHelpers(t *testing.T) {
	if got := domain.JobStream("42"); got != "job-42" {
		t.Errorf("JobStream(42) = %q", got)
	}
	if got := domain.WorkerStream("w1"); got != "worker-w1" {
		t.Errorf("WorkerStream(w1) = %q", got)
	}
	for _, tt := range []struct {
		stream, agg, id string
		ok              bool
	}{
		{"job-42", "job", "42", true},
		{"worker-w-1", "worker", "w-1", true},
		{"job-", "", "", false},
		{"jobs-1", "", "", false},
	} {
		agg, id, ok := domain.ParseStream(tt.stream)
		if agg != tt.agg || id != tt.id || ok != tt.ok {
			t.Errorf("ParseStream(%q) = %q, %q, %v, want %q, %q, %v", tt.stream, agg, id, ok, tt.agg, tt.id, tt.ok)
		}
	}
	for _, id := range []string{"", "-a", "a b", "a/b", strings.Repeat("a", 129)} {
		if domain.ValidateID(id) == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
	if err := domain.ValidateID("01JABC.x_y-z"); err != nil {
		t.Errorf("ValidateID = %v", err)
	}

	need := domain.Resources{Slots: 1, CPUMillis: 500, MemoryBytes: 1 << 30}
	free := domain.Resources{Slots: 2, CPUMillis: 500, MemoryBytes: 2 << 30}
	if !need.Fits(free) || need.Add(need).Fits(free) {
		t.Errorf("Fits: %v in %v", need, free)
	}
	if got := free.Sub(need); got != (domain.Resources{Slots: 1, MemoryBytes: 1 << 30}) {
		t.Errorf("Sub = %v", got)
	}

	w := domain.Fold(domain.Worker{}, []domain.Event{domain.WorkerRegistered{WorkerID: "w1", Info: domain.WorkerInfo{
		Name: "h", Labels: map[string]string{"arch": "amd64", "gpu": "a100"}, Capacity: free,
		AgentVersion: "1", ProtocolVersion: 1,
	}, At: t0}})
	spec := validSpec().WithDefaults()
	spec.Selector = map[string]string{"arch": "amd64"}
	spec.Resources = need
	if !w.CanRun(spec) {
		t.Errorf("CanRun(%v) = false on %v", spec, w.Info)
	}
	spec.Selector["gpu"] = "h100"
	if w.CanRun(spec) {
		t.Errorf("CanRun with a selector gpu=h100 = true on %v", w.Info.Labels)
	}
	drained := w.Apply(domain.WorkerDrainStarted{WorkerID: "w1", At: t0})
	if drained.CanRun(validSpec().WithDefaults()) {
		t.Error("a draining worker CanRun = true")
	}
}

// TestApplyDoesNotShareAttempts checks that states before and after an event
// do not share the attempts they edit.
func TestApplyDoesNotShareAttempts(t *testing.T) {
	j := domain.Fold(domain.Job{}, []domain.Event{
		domain.JobSubmitted{JobID: "j1", Spec: validSpec().WithDefaults(), At: t0},
		domain.JobScheduled{JobID: "j1", Attempt: 1, WorkerID: "w1", At: t0},
	})
	before := mustJSON(j)
	_ = j.Apply(domain.JobStarted{JobID: "j1", Attempt: 1, WorkerID: "w1", At: t0.Add(time.Second)})
	_ = j.Apply(domain.JobRequeued{JobID: "j1", Attempt: 1, WorkerID: "w1", Reason: "x", At: t0.Add(time.Second)})
	if after := mustJSON(j); after != before {
		t.Errorf("Apply changed the old state:\n%s", cmp.Diff(before, after))
	}
}

// FuzzJobSpecValidate feeds outside input to Validate: it must not panic, a
// valid spec must stay valid with defaults filled in, and Submit must accept it.
func FuzzJobSpecValidate(f *testing.F) {
	f.Add("build", "make", "GOFLAGS", "-mod=mod", "arch", "amd64", "ci/token", int64(1), 50, int64(0), 3, "default")
	f.Add("", "", "1X", "", "a/b/c", "", "/x", int64(-1), 500, int64(-5), -2, "-q")
	f.Fuzz(func(t *testing.T, name, script, envKey, envVal, labelKey, labelVal, secret string,
		slots int64, priority int, timeout int64, attempts int, queue string) {
		spec := domain.JobSpec{
			Name: name, Script: script,
			Env:       map[string]string{envKey: envVal},
			Secrets:   map[string]string{"SECRET_" + envKey: secret},
			Labels:    map[string]string{labelKey: labelVal},
			Selector:  map[string]string{labelKey: labelVal},
			Resources: domain.Resources{Slots: slots},
			Priority:  priority, Timeout: time.Duration(timeout), MaxAttempts: attempts, Queue: queue,
		}
		err := spec.Validate()
		if err != nil {
			var fe *domain.FieldError
			if !errors.As(err, &fe) || fe.Field == "" || !errors.Is(err, domain.ErrInvalidJobSpec) {
				t.Fatalf("Validate() = %v, want a *FieldError naming a field", err)
			}
			return
		}
		if err := spec.WithDefaults().Validate(); err != nil {
			t.Fatalf("WithDefaults().Validate() = %v, want nil", err)
		}
		if _, err := (domain.Job{}).Decide(domain.Submit{JobID: "j1", Spec: spec, At: t0}); err != nil {
			t.Fatalf("Decide(Submit) = %v for a valid spec", err)
		}
	})
}
