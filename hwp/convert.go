package hwp

import (
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// ErrInvalidMessage is matched (errors.Is) by *FieldError.
var ErrInvalidMessage = errors.New("invalid hwp message")

// FieldError is returned by the FromProto converters for a message that
// breaks the protocol; Field is the dotted path of the bad field.
type FieldError struct {
	Field   string // e.g. "log_chunk.attempt"
	Problem string // e.g. "must be >= 1"
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid hwp message: %s: %s", e.Field, e.Problem)
}

// Is reports whether target is ErrInvalidMessage.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidMessage }

func bad(field, problem string) error { return &FieldError{Field: field, Problem: problem} }

// MaxJobIDLen is the longest job id the protocol carries.
const MaxJobIDLen = 128

// JobRef names one attempt of a job.
type JobRef struct {
	JobID   string
	Attempt uint32
}

func jobRef(field, id string, attempt uint32) (JobRef, error) {
	if id == "" || len(id) > MaxJobIDLen {
		return JobRef{}, bad(field+".job_id", fmt.Sprintf("want 1..%d bytes, got %d", MaxJobIDLen, len(id)))
	}
	if attempt == 0 {
		return JobRef{}, bad(field+".attempt", "must be >= 1")
	}
	return JobRef{JobID: id, Attempt: attempt}, nil
}

// ---------------------------------------------------------------- agent -> server

// AgentMessage is one of *Hello, *Heartbeat, *JobAccepted, *JobRejected,
// *JobStarted, *LogChunk, *JobFinished, *Draining, *Goodbye.
type AgentMessage interface{ isAgentMessage() }

// Capacity is what an agent offers.
type Capacity struct {
	Slots       uint32
	CPUMillis   uint64
	MemoryBytes uint64
}

// RunningJob is an attempt an agent still holds when it (re)connects.
type RunningJob struct {
	JobRef
	AckedOffset uint64
	SentOffset  uint64 // the end of the log the agent holds
	Finished    bool   // the process has exited; JobFinished follows the resent log
	StartedAt   time.Time
}

// Hello opens a stream.
type Hello struct {
	Version       Version
	JoinToken     string
	IdentityToken string
	AgentID       string // worker id from an earlier Welcome, or ""
	Name          string
	Labels        map[string]string
	Capacity      Capacity
	AgentVersion  string
	Hostname      string
	OS, Arch      string
	Running       []RunningJob
}

// Heartbeat is liveness plus live telemetry.
type Heartbeat struct {
	Seq               uint64
	Time              time.Time
	CPUPercent        float64
	MemoryUsedBytes   uint64
	MemoryTotalBytes  uint64
	ProcessCPUPercent float64
	ProcessRSSBytes   uint64
	FreeSlots         uint32
	Running           []JobRef
	Draining          bool
}

// JobAccepted answers Assign: the agent runs the attempt.
type JobAccepted struct{ JobRef }

// RejectReason says why an agent did not take an assignment.
type RejectReason string

// Reject reasons.
const (
	RejectUnspecified RejectReason = "unspecified"
	RejectNoCapacity  RejectReason = "no_capacity"
	RejectDraining    RejectReason = "draining"
	RejectInvalid     RejectReason = "invalid"
	RejectDuplicate   RejectReason = "duplicate"
)

// JobRejected answers Assign: the agent will not run the attempt.
type JobRejected struct {
	JobRef
	Reason  RejectReason
	Message string
}

// JobStarted reports the process is running (may repeat after a reconnect).
type JobStarted struct {
	JobRef
	PID       int64
	StartedAt time.Time
}

// LogChunk is masked output bytes [Offset, Offset+len(Data)).
type LogChunk struct {
	JobRef
	Seq    uint64
	Offset uint64
	Data   []byte
}

// End returns Offset + len(Data).
func (c *LogChunk) End() uint64 { return c.Offset + uint64(len(c.Data)) }

// FinishReason says why an attempt ended. The names are stable: domain events
// may carry them.
type FinishReason string

// Finish reasons.
const (
	FinishExited       FinishReason = "exited"
	FinishCancelled    FinishReason = "cancelled"
	FinishTimedOut     FinishReason = "timed_out"
	FinishStartFailed  FinishReason = "start_failed"
	FinishAgentStopped FinishReason = "agent_stopped"
)

// JobFinished ends an attempt (may repeat until acknowledged).
type JobFinished struct {
	JobRef
	ExitCode   int32  // -1 when killed by a signal or never started
	Signal     string // "SIGKILL" ...
	Reason     FinishReason
	Message    string
	StartedAt  time.Time // zero when it never started
	FinishedAt time.Time
	LogBytes   uint64
	LogCRC32C  uint32
}

// Draining says the agent takes no new jobs.
type Draining struct{ Reason string }

// GoodbyeReason says why an agent is leaving.
type GoodbyeReason string

// Goodbye reasons.
const (
	GoodbyeUnspecified GoodbyeReason = "unspecified"
	GoodbyeDrained     GoodbyeReason = "drained"
	GoodbyeStopped     GoodbyeReason = "stopped"
)

// Goodbye is the agent's last message: not a lost worker.
type Goodbye struct {
	Reason  GoodbyeReason
	Message string
}

func (*Hello) isAgentMessage()       {}
func (*Heartbeat) isAgentMessage()   {}
func (*JobAccepted) isAgentMessage() {}
func (*JobRejected) isAgentMessage() {}
func (*JobStarted) isAgentMessage()  {}
func (*LogChunk) isAgentMessage()    {}
func (*JobFinished) isAgentMessage() {}
func (*Draining) isAgentMessage()    {}
func (*Goodbye) isAgentMessage()     {}

var finishFromProto = map[hwppb.FinishReason]FinishReason{
	hwppb.FinishReason_EXITED:        FinishExited,
	hwppb.FinishReason_CANCELLED:     FinishCancelled,
	hwppb.FinishReason_TIMED_OUT:     FinishTimedOut,
	hwppb.FinishReason_START_FAILED:  FinishStartFailed,
	hwppb.FinishReason_AGENT_STOPPED: FinishAgentStopped,
}

var rejectFromProto = map[hwppb.JobRejected_Reason]RejectReason{
	hwppb.JobRejected_REASON_UNSPECIFIED: RejectUnspecified,
	hwppb.JobRejected_NO_CAPACITY:        RejectNoCapacity,
	hwppb.JobRejected_DRAINING:           RejectDraining,
	hwppb.JobRejected_INVALID:            RejectInvalid,
	hwppb.JobRejected_DUPLICATE:          RejectDuplicate,
}

var goodbyeFromProto = map[hwppb.Goodbye_Reason]GoodbyeReason{
	hwppb.Goodbye_REASON_UNSPECIFIED: GoodbyeUnspecified,
	hwppb.Goodbye_DRAINED:            GoodbyeDrained,
	hwppb.Goodbye_STOPPED:            GoodbyeStopped,
}

func invert[K, V comparable](m map[K]V) map[V]K {
	r := make(map[V]K, len(m))
	for k, v := range m {
		r[v] = k
	}
	return r
}

var (
	finishToProto  = invert(finishFromProto)
	rejectToProto  = invert(rejectFromProto)
	goodbyeToProto = invert(goodbyeFromProto)
)

// timeFrom converts an optional timestamp; nil is the zero time.
func timeFrom(field string, t *timestamppb.Timestamp) (time.Time, error) {
	if t == nil {
		return time.Time{}, nil
	}
	if err := t.CheckValid(); err != nil {
		return time.Time{}, bad(field, "invalid timestamp")
	}
	return t.AsTime(), nil
}

func timeTo(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func durationFrom(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, bad(field, "invalid or negative duration")
	}
	return d.AsDuration(), nil
}

func durationTo(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func percent(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return bad(field, "not a percentage")
	}
	return nil
}

// AgentMessageFromProto validates and converts one message from an agent. It
// returns a *FieldError for a message that breaks the protocol and never
// panics, whatever m holds.
func AgentMessageFromProto(m *hwppb.AgentMessage) (AgentMessage, error) {
	switch x := m.GetMsg().(type) {
	case *hwppb.AgentMessage_Hello:
		return helloFrom(x.Hello)
	case *hwppb.AgentMessage_Heartbeat:
		return heartbeatFrom(x.Heartbeat)
	case *hwppb.AgentMessage_JobAccepted:
		r, err := jobRef("job_accepted", x.JobAccepted.GetJobId(), x.JobAccepted.GetAttempt())
		if err != nil {
			return nil, err
		}
		return &JobAccepted{JobRef: r}, nil
	case *hwppb.AgentMessage_JobRejected:
		p := x.JobRejected
		r, err := jobRef("job_rejected", p.GetJobId(), p.GetAttempt())
		if err != nil {
			return nil, err
		}
		reason, ok := rejectFromProto[p.GetReason()]
		if !ok {
			return nil, bad("job_rejected.reason", fmt.Sprintf("unknown value %d", p.GetReason()))
		}
		return &JobRejected{JobRef: r, Reason: reason, Message: p.GetMessage()}, nil
	case *hwppb.AgentMessage_JobStarted:
		p := x.JobStarted
		r, err := jobRef("job_started", p.GetJobId(), p.GetAttempt())
		if err != nil {
			return nil, err
		}
		at, err := timeFrom("job_started.started_at", p.GetStartedAt())
		if err != nil {
			return nil, err
		}
		return &JobStarted{JobRef: r, PID: p.GetPid(), StartedAt: at}, nil
	case *hwppb.AgentMessage_LogChunk:
		p := x.LogChunk
		r, err := jobRef("log_chunk", p.GetJobId(), p.GetAttempt())
		if err != nil {
			return nil, err
		}
		if p.GetOffset() > math.MaxUint64-uint64(len(p.GetData())) {
			return nil, bad("log_chunk.offset", "offset + length overflows")
		}
		return &LogChunk{JobRef: r, Seq: p.GetSeq(), Offset: p.GetOffset(), Data: p.GetData()}, nil
	case *hwppb.AgentMessage_JobFinished:
		return finishedFrom(x.JobFinished)
	case *hwppb.AgentMessage_Draining:
		return &Draining{Reason: x.Draining.GetReason()}, nil
	case *hwppb.AgentMessage_Goodbye:
		reason, ok := goodbyeFromProto[x.Goodbye.GetReason()]
		if !ok {
			return nil, bad("goodbye.reason", fmt.Sprintf("unknown value %d", x.Goodbye.GetReason()))
		}
		return &Goodbye{Reason: reason, Message: x.Goodbye.GetMessage()}, nil
	case nil:
		return nil, bad("agent_message.msg", "empty (unknown or missing message type)")
	default:
		return nil, bad("agent_message.msg", fmt.Sprintf("unsupported type %T", x))
	}
}

func helloFrom(p *hwppb.Hello) (*Hello, error) {
	if p.GetProtocolVersion() == nil {
		return nil, bad("hello.protocol_version", "missing")
	}
	if p.GetName() == "" {
		return nil, bad("hello.name", "empty")
	}
	c := p.GetCredentials()
	if c.GetJoinToken() == "" && c.GetIdentityToken() == "" {
		return nil, bad("hello.credentials", "no join or identity token")
	}
	if p.GetCapacity().GetSlots() == 0 {
		return nil, bad("hello.capacity.slots", "must be >= 1")
	}
	h := &Hello{
		Version:       Version{Major: p.GetProtocolVersion().GetMajor(), Minor: p.GetProtocolVersion().GetMinor()},
		JoinToken:     c.GetJoinToken(),
		IdentityToken: c.GetIdentityToken(),
		AgentID:       p.GetAgentId(),
		Name:          p.GetName(),
		Labels:        p.GetLabels(),
		Capacity: Capacity{
			Slots:       p.GetCapacity().GetSlots(),
			CPUMillis:   p.GetCapacity().GetCpuMillis(),
			MemoryBytes: p.GetCapacity().GetMemoryBytes(),
		},
		AgentVersion: p.GetAgentVersion(),
		Hostname:     p.GetHostname(),
		OS:           p.GetOs(),
		Arch:         p.GetArch(),
	}
	for i, r := range p.GetRunningJobs() {
		f := fmt.Sprintf("hello.running_jobs[%d]", i)
		ref, err := jobRef(f, r.GetJobId(), r.GetAttempt())
		if err != nil {
			return nil, err
		}
		if r.GetAckedOffset() > r.GetSentOffset() {
			return nil, bad(f+".acked_offset", "beyond sent_offset")
		}
		at, err := timeFrom(f+".started_at", r.GetStartedAt())
		if err != nil {
			return nil, err
		}
		h.Running = append(h.Running, RunningJob{JobRef: ref, AckedOffset: r.GetAckedOffset(), SentOffset: r.GetSentOffset(), Finished: r.GetFinished(), StartedAt: at})
	}
	return h, nil
}

func heartbeatFrom(p *hwppb.Heartbeat) (*Heartbeat, error) {
	at, err := timeFrom("heartbeat.time", p.GetTime())
	if err != nil {
		return nil, err
	}
	if err := percent("heartbeat.cpu_percent", p.GetCpuPercent()); err != nil {
		return nil, err
	}
	if err := percent("heartbeat.process_cpu_percent", p.GetProcessCpuPercent()); err != nil {
		return nil, err
	}
	if p.GetMemoryUsedBytes() > p.GetMemoryTotalBytes() {
		return nil, bad("heartbeat.memory_used_bytes", "exceeds memory_total_bytes")
	}
	h := &Heartbeat{
		Seq: p.GetSeq(), Time: at,
		CPUPercent: p.GetCpuPercent(), MemoryUsedBytes: p.GetMemoryUsedBytes(), MemoryTotalBytes: p.GetMemoryTotalBytes(),
		ProcessCPUPercent: p.GetProcessCpuPercent(), ProcessRSSBytes: p.GetProcessRssBytes(),
		FreeSlots: p.GetFreeSlots(), Draining: p.GetDraining(),
	}
	for i, r := range p.GetRunning() {
		ref, err := jobRef(fmt.Sprintf("heartbeat.running[%d]", i), r.GetJobId(), r.GetAttempt())
		if err != nil {
			return nil, err
		}
		h.Running = append(h.Running, ref)
	}
	return h, nil
}

func finishedFrom(p *hwppb.JobFinished) (*JobFinished, error) {
	r, err := jobRef("job_finished", p.GetJobId(), p.GetAttempt())
	if err != nil {
		return nil, err
	}
	reason, ok := finishFromProto[p.GetReason()]
	if !ok {
		return nil, bad("job_finished.reason", fmt.Sprintf("unknown value %d", p.GetReason()))
	}
	started, err := timeFrom("job_finished.started_at", p.GetStartedAt())
	if err != nil {
		return nil, err
	}
	finished, err := timeFrom("job_finished.finished_at", p.GetFinishedAt())
	if err != nil {
		return nil, err
	}
	return &JobFinished{
		JobRef: r, ExitCode: p.GetExitCode(), Signal: p.GetSignal(), Reason: reason, Message: p.GetMessage(),
		StartedAt: started, FinishedAt: finished, LogBytes: p.GetLogBytes(), LogCRC32C: p.GetLogCrc32C(),
	}, nil
}

// AgentMessageToProto converts a plain agent message to its wire form (the
// inverse of AgentMessageFromProto; for tests and tools). It returns nil for
// a nil or unknown message.
func AgentMessageToProto(m AgentMessage) *hwppb.AgentMessage {
	switch x := m.(type) {
	case *Hello:
		p := &hwppb.Hello{
			ProtocolVersion: &hwppb.Version{Major: x.Version.Major, Minor: x.Version.Minor},
			Credentials:     &hwppb.Credentials{JoinToken: x.JoinToken, IdentityToken: x.IdentityToken},
			AgentId:         x.AgentID, Name: x.Name, Labels: x.Labels,
			Capacity:     &hwppb.Capacity{Slots: x.Capacity.Slots, CpuMillis: x.Capacity.CPUMillis, MemoryBytes: x.Capacity.MemoryBytes},
			AgentVersion: x.AgentVersion, Hostname: x.Hostname, Os: x.OS, Arch: x.Arch,
		}
		for _, r := range x.Running {
			p.RunningJobs = append(p.RunningJobs, &hwppb.RunningJob{JobId: r.JobID, Attempt: r.Attempt, AckedOffset: r.AckedOffset,
				SentOffset: r.SentOffset, Finished: r.Finished, StartedAt: timeTo(r.StartedAt)})
		}
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: p}}
	case *Heartbeat:
		p := &hwppb.Heartbeat{Seq: x.Seq, Time: timeTo(x.Time), CpuPercent: x.CPUPercent, MemoryUsedBytes: x.MemoryUsedBytes,
			MemoryTotalBytes: x.MemoryTotalBytes, ProcessCpuPercent: x.ProcessCPUPercent, ProcessRssBytes: x.ProcessRSSBytes,
			FreeSlots: x.FreeSlots, Draining: x.Draining}
		for _, r := range x.Running {
			p.Running = append(p.Running, &hwppb.JobRef{JobId: r.JobID, Attempt: r.Attempt})
		}
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Heartbeat{Heartbeat: p}}
	case *JobAccepted:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobAccepted{JobAccepted: &hwppb.JobAccepted{JobId: x.JobID, Attempt: x.Attempt}}}
	case *JobRejected:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobRejected{JobRejected: &hwppb.JobRejected{JobId: x.JobID, Attempt: x.Attempt,
			Reason: rejectToProto[x.Reason], Message: x.Message}}}
	case *JobStarted:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobStarted{JobStarted: &hwppb.JobStarted{JobId: x.JobID, Attempt: x.Attempt,
			Pid: x.PID, StartedAt: timeTo(x.StartedAt)}}}
	case *LogChunk:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_LogChunk{LogChunk: &hwppb.LogChunk{JobId: x.JobID, Attempt: x.Attempt,
			Seq: x.Seq, Offset: x.Offset, Data: x.Data}}}
	case *JobFinished:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobFinished{JobFinished: &hwppb.JobFinished{JobId: x.JobID, Attempt: x.Attempt,
			ExitCode: x.ExitCode, Signal: x.Signal, Reason: finishToProto[x.Reason], Message: x.Message,
			StartedAt: timeTo(x.StartedAt), FinishedAt: timeTo(x.FinishedAt), LogBytes: x.LogBytes, LogCrc32C: x.LogCRC32C}}}
	case *Draining:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Draining{Draining: &hwppb.Draining{Reason: x.Reason}}}
	case *Goodbye:
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Goodbye{Goodbye: &hwppb.Goodbye{Reason: goodbyeToProto[x.Reason], Message: x.Message}}}
	}
	return nil
}

// ---------------------------------------------------------------- server -> agent

// ServerMessage is one of *Welcome, *Refused, *Assign, *Cancel, *Fence,
// *Drain, *TokenRefresh, *LogAck.
type ServerMessage interface{ isServerMessage() }

// Limits the server sets for an agent.
type Limits struct {
	MaxLogChunkBytes uint32        // 0: agent default (64 KiB)
	LogFlushInterval time.Duration // 0: send as soon as possible
	MaxMessageBytes  uint32        // 0: no extra limit
	// MaxInflightLogBytes: per attempt, unacknowledged log bytes an agent may
	// have in flight (0: agent default, 256 KiB). Ack at least this often.
	MaxInflightLogBytes uint32
}

// JobOffset is the server's stored log length for one attempt.
type JobOffset struct {
	JobRef
	Offset uint64
}

// Welcome accepts an agent.
type Welcome struct {
	WorkerID          string
	Version           Version // from Negotiate
	HeartbeatInterval time.Duration
	Limits            Limits
	IdentityToken     string
	IdentityExpiresAt time.Time
	Resume            []JobOffset // per RunningJob in Hello: the stored log length
	ServerVersion     string
}

// RefuseCode says why an agent was refused.
type RefuseCode string

// Refuse codes. IncompatibleVersion and Unauthenticated are permanent for the
// agent (it exits); DuplicateAgent and Unavailable make it retry.
const (
	RefuseIncompatibleVersion RefuseCode = "incompatible_version"
	RefuseUnauthenticated     RefuseCode = "unauthenticated"
	RefuseDuplicateAgent      RefuseCode = "duplicate_agent"
	RefuseUnavailable         RefuseCode = "unavailable"
)

// Refused rejects an agent; the server ends the stream after it.
type Refused struct {
	Code          RefuseCode
	Message       string
	ServerVersion Version
	RetryAfter    time.Duration
}

// RefusedFor returns the Refused to send for an error from Negotiate.
func RefusedFor(err error) *Refused {
	var ve *IncompatibleVersionError
	if errors.As(err, &ve) {
		return &Refused{Code: RefuseIncompatibleVersion, Message: ve.Error(), ServerVersion: ve.Server}
	}
	return &Refused{Code: RefuseUnavailable, Message: err.Error()}
}

// Assign gives an agent one attempt. Secrets are resolved values: they reach
// only this agent and are masked in its output.
type Assign struct {
	JobRef
	Script      string
	Env         map[string]string
	Secrets     map[string]string
	WorkingDir  string        // "": a fresh dir in the agent's work dir
	Timeout     time.Duration // 0: none
	CancelGrace time.Duration // 0: agent default
	Shell       []string      // nil: agent default
}

// Cancel stops an attempt: SIGTERM to its group, SIGKILL after Grace.
type Cancel struct {
	JobRef
	Reason string
	Grace  time.Duration // 0: the assignment's
}

// Fence tells an agent an attempt is stale: kill it, drop its output.
type Fence struct {
	JobRef
	Reason string
}

// Drain asks an agent to take no new jobs and exit when done.
type Drain struct {
	Reason        string
	CancelRunning bool
}

// TokenRefresh rotates an agent's identity token.
type TokenRefresh struct {
	Token     string
	ExpiresAt time.Time
}

// LogAck acknowledges an attempt's log up to Offset; Finished also
// acknowledges its JobFinished (the agent then forgets the attempt).
type LogAck struct {
	JobRef
	Offset   uint64
	Finished bool
}

func (*Welcome) isServerMessage()      {}
func (*Refused) isServerMessage()      {}
func (*Assign) isServerMessage()       {}
func (*Cancel) isServerMessage()       {}
func (*Fence) isServerMessage()        {}
func (*Drain) isServerMessage()        {}
func (*TokenRefresh) isServerMessage() {}
func (*LogAck) isServerMessage()       {}

var refuseFromProto = map[hwppb.Refused_Code]RefuseCode{
	hwppb.Refused_INCOMPATIBLE_VERSION: RefuseIncompatibleVersion,
	hwppb.Refused_UNAUTHENTICATED:      RefuseUnauthenticated,
	hwppb.Refused_DUPLICATE_AGENT:      RefuseDuplicateAgent,
	hwppb.Refused_UNAVAILABLE:          RefuseUnavailable,
}

var refuseToProto = invert(refuseFromProto)

// ServerMessageToProto converts a plain server message to its wire form. It
// returns nil for a nil or unknown message.
func ServerMessageToProto(m ServerMessage) *hwppb.ServerMessage {
	switch x := m.(type) {
	case *Welcome:
		p := &hwppb.Welcome{
			WorkerId:          x.WorkerID,
			ProtocolVersion:   &hwppb.Version{Major: x.Version.Major, Minor: x.Version.Minor},
			HeartbeatInterval: durationTo(x.HeartbeatInterval),
			Limits: &hwppb.Limits{MaxLogChunkBytes: x.Limits.MaxLogChunkBytes, LogFlushInterval: durationTo(x.Limits.LogFlushInterval),
				MaxMessageBytes: x.Limits.MaxMessageBytes, MaxInflightLogBytes: x.Limits.MaxInflightLogBytes},
			IdentityToken:     x.IdentityToken,
			IdentityExpiresAt: timeTo(x.IdentityExpiresAt),
			ServerVersion:     x.ServerVersion,
		}
		for _, r := range x.Resume {
			p.Resume = append(p.Resume, &hwppb.JobOffset{JobId: r.JobID, Attempt: r.Attempt, Offset: r.Offset})
		}
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Welcome{Welcome: p}}
	case *Refused:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: &hwppb.Refused{Code: refuseToProto[x.Code], Message: x.Message,
			ServerVersion: &hwppb.Version{Major: x.ServerVersion.Major, Minor: x.ServerVersion.Minor}, RetryAfter: durationTo(x.RetryAfter)}}}
	case *Assign:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: x.JobID, Attempt: x.Attempt,
			Script: x.Script, Env: x.Env, Secrets: x.Secrets, WorkingDir: x.WorkingDir, Timeout: durationTo(x.Timeout),
			CancelGrace: durationTo(x.CancelGrace), Shell: x.Shell}}}
	case *Cancel:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Cancel{Cancel: &hwppb.Cancel{JobId: x.JobID, Attempt: x.Attempt,
			Reason: x.Reason, Grace: durationTo(x.Grace)}}}
	case *Fence:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Fence{Fence: &hwppb.Fence{JobId: x.JobID, Attempt: x.Attempt, Reason: x.Reason}}}
	case *Drain:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Drain{Drain: &hwppb.Drain{Reason: x.Reason, CancelRunning: x.CancelRunning}}}
	case *TokenRefresh:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_TokenRefresh{TokenRefresh: &hwppb.TokenRefresh{Token: x.Token, ExpiresAt: timeTo(x.ExpiresAt)}}}
	case *LogAck:
		return &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_LogAck{LogAck: &hwppb.LogAck{JobId: x.JobID, Attempt: x.Attempt,
			Offset: x.Offset, Finished: x.Finished}}}
	}
	return nil
}

// ServerMessageFromProto converts a server message from its wire form (the
// inverse of ServerMessageToProto; for tests and tools). It validates job
// references and durations.
func ServerMessageFromProto(m *hwppb.ServerMessage) (ServerMessage, error) {
	switch x := m.GetMsg().(type) {
	case *hwppb.ServerMessage_Welcome:
		p := x.Welcome
		hb, err := durationFrom("welcome.heartbeat_interval", p.GetHeartbeatInterval())
		if err != nil {
			return nil, err
		}
		flush, err := durationFrom("welcome.limits.log_flush_interval", p.GetLimits().GetLogFlushInterval())
		if err != nil {
			return nil, err
		}
		exp, err := timeFrom("welcome.identity_expires_at", p.GetIdentityExpiresAt())
		if err != nil {
			return nil, err
		}
		w := &Welcome{WorkerID: p.GetWorkerId(), Version: Version{Major: p.GetProtocolVersion().GetMajor(), Minor: p.GetProtocolVersion().GetMinor()},
			HeartbeatInterval: hb, Limits: Limits{MaxLogChunkBytes: p.GetLimits().GetMaxLogChunkBytes(), LogFlushInterval: flush,
				MaxMessageBytes: p.GetLimits().GetMaxMessageBytes(), MaxInflightLogBytes: p.GetLimits().GetMaxInflightLogBytes()},
			IdentityToken: p.GetIdentityToken(), IdentityExpiresAt: exp, ServerVersion: p.GetServerVersion()}
		for i, r := range p.GetResume() {
			ref, err := jobRef(fmt.Sprintf("welcome.resume[%d]", i), r.GetJobId(), r.GetAttempt())
			if err != nil {
				return nil, err
			}
			w.Resume = append(w.Resume, JobOffset{JobRef: ref, Offset: r.GetOffset()})
		}
		return w, nil
	case *hwppb.ServerMessage_Refused:
		p := x.Refused
		code, ok := refuseFromProto[p.GetCode()]
		if !ok {
			return nil, bad("refused.code", fmt.Sprintf("unknown value %d", p.GetCode()))
		}
		ra, err := durationFrom("refused.retry_after", p.GetRetryAfter())
		if err != nil {
			return nil, err
		}
		return &Refused{Code: code, Message: p.GetMessage(), ServerVersion: Version{Major: p.GetServerVersion().GetMajor(), Minor: p.GetServerVersion().GetMinor()}, RetryAfter: ra}, nil
	case *hwppb.ServerMessage_Assign:
		p := x.Assign
		ref, err := jobRef("assign", p.GetJobId(), p.GetAttempt())
		if err != nil {
			return nil, err
		}
		to, err := durationFrom("assign.timeout", p.GetTimeout())
		if err != nil {
			return nil, err
		}
		grace, err := durationFrom("assign.cancel_grace", p.GetCancelGrace())
		if err != nil {
			return nil, err
		}
		return &Assign{JobRef: ref, Script: p.GetScript(), Env: p.GetEnv(), Secrets: p.GetSecrets(), WorkingDir: p.GetWorkingDir(),
			Timeout: to, CancelGrace: grace, Shell: p.GetShell()}, nil
	case *hwppb.ServerMessage_Cancel:
		p := x.Cancel
		ref, err := jobRef("cancel", p.GetJobId(), p.GetAttempt())
		if err != nil {
			return nil, err
		}
		g, err := durationFrom("cancel.grace", p.GetGrace())
		if err != nil {
			return nil, err
		}
		return &Cancel{JobRef: ref, Reason: p.GetReason(), Grace: g}, nil
	case *hwppb.ServerMessage_Fence:
		ref, err := jobRef("fence", x.Fence.GetJobId(), x.Fence.GetAttempt())
		if err != nil {
			return nil, err
		}
		return &Fence{JobRef: ref, Reason: x.Fence.GetReason()}, nil
	case *hwppb.ServerMessage_Drain:
		return &Drain{Reason: x.Drain.GetReason(), CancelRunning: x.Drain.GetCancelRunning()}, nil
	case *hwppb.ServerMessage_TokenRefresh:
		exp, err := timeFrom("token_refresh.expires_at", x.TokenRefresh.GetExpiresAt())
		if err != nil {
			return nil, err
		}
		return &TokenRefresh{Token: x.TokenRefresh.GetToken(), ExpiresAt: exp}, nil
	case *hwppb.ServerMessage_LogAck:
		ref, err := jobRef("log_ack", x.LogAck.GetJobId(), x.LogAck.GetAttempt())
		if err != nil {
			return nil, err
		}
		return &LogAck{JobRef: ref, Offset: x.LogAck.GetOffset(), Finished: x.LogAck.GetFinished()}, nil
	case nil:
		return nil, bad("server_message.msg", "empty (unknown or missing message type)")
	default:
		return nil, bad("server_message.msg", fmt.Sprintf("unsupported type %T", x))
	}
}
