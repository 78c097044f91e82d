package scheduler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxQuantity bounds every field of a Resources value, so sums of
// reservations can never overflow an int64.
const MaxQuantity = 1 << 50

// Priority bounds. Higher runs first; see Config.AgingRate for how waiting
// raises a job's effective priority.
const (
	MinPriority = 0
	MaxPriority = 1000
)

// Resources is an amount of worker capacity: what a job asks for, what a
// worker declares and what the scheduler reserves. The field names and JSON
// tags match domain.Resources so the core converts with a plain struct copy.
type Resources struct {
	Slots       int64 `json:"slots"`
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.Slots + o.Slots, r.CPUMillis + o.CPUMillis, r.MemoryBytes + o.MemoryBytes}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.Slots - o.Slots, r.CPUMillis - o.CPUMillis, r.MemoryBytes - o.MemoryBytes}
}

// LessOrEqual reports whether r <= o in every dimension.
func (r Resources) LessOrEqual(o Resources) bool {
	return r.Slots <= o.Slots && r.CPUMillis <= o.CPUMillis && r.MemoryBytes <= o.MemoryBytes
}

// String renders r for people: "1 slot, 2 CPU, 4 GiB memory".
func (r Resources) String() string {
	return fmt.Sprintf("%s, %s CPU, %s memory", plural(r.Slots, "slot"), formatCPU(r.CPUMillis), formatBytes(r.MemoryBytes))
}

// fits is THE fit function: the filter (sampling), the reserve step and the
// unschedulable classification all call it, so they can never disagree about
// whether a job fits a worker (the lesson of kubernetes#106361 and
// hashicorp/nomad#13017).
func fits(capacity, reserved, req Resources) bool {
	return reserved.Slots+req.Slots <= capacity.Slots &&
		reserved.CPUMillis+req.CPUMillis <= capacity.CPUMillis &&
		reserved.MemoryBytes+req.MemoryBytes <= capacity.MemoryBytes
}

func maxResources(a, b Resources) Resources {
	return Resources{max(a.Slots, b.Slots), max(a.CPUMillis, b.CPUMillis), max(a.MemoryBytes, b.MemoryBytes)}
}

func (r Resources) check(field string) error {
	switch {
	case r.Slots < 0 || r.Slots > MaxQuantity:
		return invalid(field+".slots", "%d is outside 0..%d", r.Slots, int64(MaxQuantity))
	case r.CPUMillis < 0 || r.CPUMillis > MaxQuantity:
		return invalid(field+".cpu_millis", "%d is outside 0..%d", r.CPUMillis, int64(MaxQuantity))
	case r.MemoryBytes < 0 || r.MemoryBytes > MaxQuantity:
		return invalid(field+".memory_bytes", "%d is outside 0..%d", r.MemoryBytes, int64(MaxQuantity))
	}
	return nil
}

// State is whether a worker takes new jobs.
type State uint8

// Worker states. The zero value is StateReady.
const (
	// StateReady workers take new jobs.
	StateReady State = iota
	// StateDraining workers keep their running jobs and get no new ones.
	StateDraining
	// StateLost workers are unreachable: they get no new jobs, and their
	// reservations stay until the core releases or re-queues each job.
	StateLost
)

// String returns "ready", "draining" or "lost".
func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateDraining:
		return "draining"
	case StateLost:
		return "lost"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Worker is what the scheduler knows about an agent that is not telemetry:
// its labels, its declared capacity and whether it takes new jobs.
type Worker struct {
	ID       string
	Labels   map[string]string
	Capacity Resources
	State    State
}

// Telemetry is one heartbeat's live measurement of a worker. It is not an
// event: the scheduler overwrites it in memory.
type Telemetry struct {
	// At is when the server received the heartbeat (the core's clock).
	At time.Time
	// CPUFraction is used CPU over the worker's declared CPU, from 0 (idle) to
	// 1 (full); values above 1 are treated as 1.
	CPUFraction float64
	// MemoryUsedBytes is resident memory in use on the worker.
	MemoryUsedBytes int64
}

func (t Telemetry) check() error {
	switch {
	case t.At.IsZero():
		return invalid("at", "zero time")
	case math.IsNaN(t.CPUFraction) || math.IsInf(t.CPUFraction, 0) || t.CPUFraction < 0:
		return invalid("cpu_fraction", "%v is not a finite non-negative number", t.CPUFraction)
	case t.MemoryUsedBytes < 0 || t.MemoryUsedBytes > MaxQuantity:
		return invalid("memory_used_bytes", "%d is outside 0..%d", t.MemoryUsedBytes, int64(MaxQuantity))
	}
	return nil
}

// WorkerInfo is a read-only snapshot of one worker for read models and tests.
type WorkerInfo struct {
	Worker
	Reserved Resources
	Jobs     int       // reservations held
	LastSeen time.Time // last heartbeat or registration
	// Telemetry is the last heartbeat; zero At if none arrived yet.
	Telemetry Telemetry
}

// Job is a request to place one attempt of a job.
type Job struct {
	ID      string
	Attempt uint32
	// Queue is the tenant the job is accounted to for fair share; "" means
	// "default".
	Queue string
	// Priority is MinPriority..MaxPriority; higher goes first within a queue.
	Priority int
	// SubmittedAt is when the job was first submitted; a re-queued attempt
	// keeps it, so it keeps the age it has earned. Zero means Submit's now.
	SubmittedAt time.Time
	// Resources is what one attempt reserves. Slots 0 means 1.
	Resources Resources
	// Selector is the hard label requirements a worker must meet.
	Selector Selector
	// Affinity is soft label preferences that raise or lower a worker's score.
	Affinity []Preference
}

// DefaultQueue is the queue of jobs submitted with an empty Queue.
const DefaultQueue = "default"

// Key names one attempt of one job: the unit of reservation.
type Key struct {
	JobID   string
	Attempt uint32
}

// String renders k as "<job id>#<attempt>".
func (k Key) String() string { return fmt.Sprintf("%s#%d", k.JobID, k.Attempt) }

// Placement is the scheduler's decision for one job attempt. Its resources
// are already reserved on the worker; the core appends the scheduled event and
// sends the job, and calls Release if either fails.
type Placement struct {
	JobID     string
	Attempt   uint32
	Queue     string
	WorkerID  string
	Resources Resources
}

// Parked reports a job that no worker can run, and why in words an operator
// can act on ("no worker has label gpu=true").
type Parked struct {
	JobID   string
	Attempt uint32
	Queue   string
	Reason  string
	Since   time.Time
}

// Reservation is capacity held on a worker for one job attempt, from its
// placement (or Reserve) until Release or RemoveWorker.
type Reservation struct {
	JobID     string
	Attempt   uint32
	Queue     string
	WorkerID  string
	Resources Resources
	PlacedAt  time.Time
}

// Errors. Operations wrap them with the operation and its subject, so test
// with errors.Is.
var (
	// ErrInvalid is returned (inside an *InvalidError) for malformed input.
	// Nothing was changed.
	ErrInvalid = errors.New("invalid input")
	// ErrUnknownWorker is returned for a worker id the scheduler does not know.
	ErrUnknownWorker = errors.New("unknown worker")
	// ErrNoRoom is returned by Reserve when the job does not fit into the
	// worker's declared capacity minus what is already reserved.
	ErrNoRoom = errors.New("not enough free capacity")
	// ErrDuplicate is returned by Submit and Reserve for a job attempt that is
	// already pending or already holds a reservation.
	ErrDuplicate = errors.New("job attempt already pending or reserved")
)

// InvalidError names the field of bad input and what is wrong with it.
type InvalidError struct {
	Field  string // e.g. "resources.cpu_millis", "selector[1].key"
	Reason string
}

// Error returns "<field>: <reason>".
func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// prefixField returns err with prefix added to its field, if it is an
// *InvalidError.
func prefixField(prefix string, err error) error {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return &InvalidError{Field: prefix + ie.Field, Reason: ie.Reason}
	}
	return err
}

func formatCPU(millis int64) string {
	if millis%1000 == 0 {
		return fmt.Sprintf("%d", millis/1000)
	}
	return fmt.Sprintf("%dm", millis)
}

func formatBytes(b int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
		tib = 1 << 40
	)
	f := func(unit int64, name string) string {
		v := float64(b) / float64(unit)
		if b%unit == 0 {
			return fmt.Sprintf("%d %s", b/unit, name)
		}
		return fmt.Sprintf("%.1f %s", v, name)
	}
	switch {
	case b >= tib:
		return f(tib, "TiB")
	case b >= gib:
		return f(gib, "GiB")
	case b >= mib:
		return f(mib, "MiB")
	case b >= kib:
		return f(kib, "KiB")
	}
	return fmt.Sprintf("%d bytes", b)
}
