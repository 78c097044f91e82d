package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/agent/mask"
	"github.com/hodei-jobs/hodei/agent/proc"
	"github.com/hodei-jobs/hodei/agent/spool"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

type jobKey struct {
	id      string
	attempt uint32
}

func (k jobKey) String() string { return k.id + "/" + strconv.FormatUint(uint64(k.attempt), 10) }

// job is one attempt held by the agent, from Assign until the server
// acknowledges its finish (or it is fenced).
type job struct {
	key     jobKey
	assign  *hwppb.Assign
	spool   *spool.File
	dir     string
	ownDir  bool // dir was made by the agent and is removed with the job
	timeout time.Duration
	grace   time.Duration
	poke    chan struct{} // cap 1: control fields changed
	done    chan struct{} // closed when the job goroutine returns

	spoolErr atomic.Pointer[error]

	// Guarded by Agent.mu.
	startedAt    time.Time
	pid          int
	finished     bool
	fin          *hwppb.JobFinished
	acked        uint64 // highest LogAck offset
	sent         uint64 // next offset to send on the live session
	seq          uint64
	lastSend     time.Time // last LogChunk, for the flush interval
	acceptedSent bool
	startedSent  bool
	finishSent   bool
	fenced       bool
	kill         bool // SIGKILL now (agent exiting)
	cancel       bool // SIGTERM, then SIGKILL after cancelGrace
	cancelWhy    hwppb.FinishReason
	cancelMsg    string
	cancelGrace  time.Duration
}

func (j *job) pokeJob() {
	select {
	case j.poke <- struct{}{}:
	default:
	}
}

var (
	jobIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validateAssign checks everything that comes from the server before it is
// used in a path, an environment or a timer. Errors name the field.
func validateAssign(a *hwppb.Assign) error {
	if !jobIDRe.MatchString(a.GetJobId()) {
		return fmt.Errorf("assign.job_id %q: want 1-128 of [A-Za-z0-9._-], starting alphanumeric", a.GetJobId())
	}
	if a.GetAttempt() == 0 {
		return errors.New("assign.attempt: must be >= 1")
	}
	if a.GetScript() == "" {
		return errors.New("assign.script: empty")
	}
	if strings.IndexByte(a.GetScript(), 0) >= 0 {
		return errors.New("assign.script: contains NUL")
	}
	for k, v := range a.GetEnv() {
		if !envKeyRe.MatchString(k) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("assign.env[%q]: invalid name or NUL in value", k)
		}
	}
	for k, v := range a.GetSecrets() {
		if !envKeyRe.MatchString(k) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("assign.secrets[%q]: invalid name or NUL in value", k)
		}
	}
	for i, s := range a.GetShell() {
		if s == "" || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("assign.shell[%d]: empty or NUL", i)
		}
	}
	if wd := a.GetWorkingDir(); strings.IndexByte(wd, 0) >= 0 {
		return errors.New("assign.working_dir: contains NUL")
	} else if wd != "" && !filepath.IsAbs(wd) && !filepath.IsLocal(wd) {
		return fmt.Errorf("assign.working_dir %q: a relative dir must stay inside the agent's work dir", wd)
	}
	if d := a.GetTimeout(); d != nil && (!d.IsValid() || d.AsDuration() < 0) {
		return errors.New("assign.timeout: invalid or negative")
	}
	if d := a.GetCancelGrace(); d != nil && (!d.IsValid() || d.AsDuration() < 0) {
		return errors.New("assign.cancel_grace: invalid or negative")
	}
	return nil
}

// assign handles an Assign: it accepts (starting the job) or rejects it.
func (a *Agent) assign(s *session, as *hwppb.Assign) {
	reject := func(r hwppb.JobRejected_Reason, msg string) {
		a.cfg.Logger.Warn("assignment rejected", "job", as.GetJobId(), "attempt", as.GetAttempt(), "reason", r.String(), "message", msg)
		s.enqueue(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobRejected{JobRejected: &hwppb.JobRejected{
			JobId: as.GetJobId(), Attempt: as.GetAttempt(), Reason: r, Message: msg}}})
	}
	if err := validateAssign(as); err != nil {
		reject(hwppb.JobRejected_INVALID, err.Error())
		return
	}
	if r, msg := a.accept(as); r != acceptOK {
		reject(r, msg)
	}
}

// acceptOK is accept's answer when the attempt was taken (or already held).
const acceptOK = hwppb.JobRejected_Reason(-1)

// accept takes the attempt if it can, starting its goroutine; otherwise it
// returns why not.
func (a *Agent) accept(as *hwppb.Assign) (hwppb.JobRejected_Reason, string) {
	k := jobKey{as.GetJobId(), as.GetAttempt()}
	a.mu.Lock()
	defer a.mu.Unlock()
	if j := a.jobs[k]; j != nil {
		// A repeated Assign (the server did not see our JobAccepted): the
		// attempt runs once; just answer again.
		j.acceptedSent = false
		a.notify()
		return acceptOK, ""
	}
	for _, o := range a.order {
		// A fenced attempt is on its way out: it blocks neither a new
		// attempt of its job nor a slot.
		if !o.finished && !o.fenced && o.key.id == k.id {
			return hwppb.JobRejected_DUPLICATE, fmt.Sprintf("attempt %d of this job is still running here", o.key.attempt)
		}
	}
	if a.draining || a.stopping {
		return hwppb.JobRejected_DRAINING, "agent is draining: " + a.drainReason
	}
	if a.busyLocked() >= a.cfg.Slots {
		return hwppb.JobRejected_NO_CAPACITY, fmt.Sprintf("all %d slots busy", a.cfg.Slots)
	}
	sp, err := spool.Create(filepath.Join(a.cfg.WorkDir, "spool"), k.id+"."+strconv.FormatUint(uint64(k.attempt), 10)+".log")
	if err != nil {
		return hwppb.JobRejected_REASON_UNSPECIFIED, err.Error()
	}
	j := &job{
		key:     k,
		assign:  as,
		spool:   sp,
		timeout: as.GetTimeout().AsDuration(),
		grace:   a.cfg.CancelGrace,
		poke:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if g := as.GetCancelGrace().AsDuration(); g > 0 {
		j.grace = g
	}
	a.jobs[k] = j
	a.order = append(a.order, j)
	a.jobsWG.Add(1)
	go func() {
		defer a.jobsWG.Done()
		a.runJob(j)
	}()
	a.notify()
	return acceptOK, ""
}

// cancelLocked asks a running job to stop (grace 0: the job's own).
func (a *Agent) cancelLocked(j *job, why hwppb.FinishReason, msg string, grace time.Duration) {
	if j.finished || j.fenced {
		return
	}
	if !j.cancel {
		j.cancel, j.cancelWhy, j.cancelMsg = true, why, msg
	}
	if grace <= 0 {
		grace = j.grace
	}
	if j.cancelGrace <= 0 || grace < j.cancelGrace {
		j.cancelGrace = grace
	}
	j.pokeJob()
}

// fence kills a stale attempt and forgets it without reporting.
func (a *Agent) fence(f *hwppb.Fence) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[jobKey{f.GetJobId(), f.GetAttempt()}]
	if j == nil {
		return
	}
	a.cfg.Logger.Warn("attempt fenced", "job", j.key.id, "attempt", j.key.attempt, "reason", f.GetReason())
	j.fenced = true
	if j.finished {
		a.dropLocked(j)
		a.notify()
		return
	}
	j.pokeJob() // the job goroutine kills the group and drops the job
}

// logAck records the server's stored offset; a finished ack ends the job.
func (a *Agent) logAck(l *hwppb.LogAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[jobKey{l.GetJobId(), l.GetAttempt()}]
	if j == nil {
		return
	}
	size := uint64(j.spool.Size())
	j.acked = max(j.acked, min(l.GetOffset(), size))
	a.notify() // the in-flight window may have opened
	if l.GetFinished() && j.finished && l.GetOffset() >= j.fin.GetLogBytes() {
		a.dropLocked(j)
		a.notify()
	}
}

// dropLocked forgets a job: spool and own working dir removed.
func (a *Agent) dropLocked(j *job) {
	if a.jobs[j.key] != j {
		return
	}
	delete(a.jobs, j.key)
	if i := slices.Index(a.order, j); i >= 0 {
		a.order = slices.Delete(a.order, i, i+1)
	}
	if err := j.spool.Remove(); err != nil {
		a.cfg.Logger.Warn("remove spool", "job", j.key.String(), "err", err)
	}
	if j.ownDir {
		_ = os.RemoveAll(j.dir)
	}
}

type outcome struct {
	exit    proc.Exit
	reason  hwppb.FinishReason
	message string
	started time.Time
}

// runJob runs the attempt to its end and records the outcome.
func (a *Agent) runJob(j *job) {
	defer close(j.done)
	o := a.execute(j)
	now := a.cfg.Clock.Now()
	if p := j.spoolErr.Load(); p != nil {
		o.message = strings.TrimPrefix(o.message+"; log incomplete: "+(*p).Error(), "; ")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	j.finished = true
	if j.fenced {
		a.dropLocked(j)
		a.notify()
		return
	}
	j.fin = &hwppb.JobFinished{
		JobId:      j.key.id,
		Attempt:    j.key.attempt,
		ExitCode:   int32(o.exit.Code),
		Signal:     o.exit.Signal,
		Reason:     o.reason,
		Message:    o.message,
		FinishedAt: timestamppb.New(now),
		LogBytes:   uint64(j.spool.Size()),
		LogCrc32C:  j.spool.CRC32C(),
	}
	if !o.started.IsZero() {
		j.fin.StartedAt = timestamppb.New(o.started)
	}
	a.cfg.Logger.Info("job finished", "job", j.key.String(), "reason", o.reason.String(), "exit", o.exit.Code, "signal", o.exit.Signal, "log_bytes", j.fin.LogBytes)
	a.notify()
}

func startFailed(err error) outcome {
	return outcome{exit: proc.Exit{Code: -1}, reason: hwppb.FinishReason_START_FAILED, message: err.Error()}
}

// execute starts the process and supervises it: timeout, cancel with grace,
// fence, agent kill. It returns when the process has exited and its output
// has been read and spooled.
func (a *Agent) execute(j *job) outcome {
	as := j.assign
	m, err := mask.New(as.GetSecrets())
	if err != nil {
		return startFailed(fmt.Errorf("start job: %w", err))
	}
	dir := as.GetWorkingDir()
	own := dir == ""
	if own {
		dir = filepath.Join(a.cfg.WorkDir, "jobs", j.key.id+"."+strconv.FormatUint(uint64(j.key.attempt), 10))
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(a.cfg.WorkDir, "jobs", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return startFailed(fmt.Errorf("start job: working dir: %w", err))
	}
	a.mu.Lock()
	j.dir, j.ownDir = dir, own
	a.mu.Unlock()

	shell := as.GetShell()
	if len(shell) == 0 {
		shell = a.cfg.Shell
	}
	p, err := proc.Start(proc.Spec{Shell: shell, Script: as.GetScript(), Env: a.jobEnv(j, dir), Dir: dir})
	if err != nil {
		return startFailed(fmt.Errorf("start job: %w", err))
	}
	if a.cfg.JobNice > 0 {
		// The group is just the shell yet; what it starts inherits this.
		if err := syscall.Setpriority(syscall.PRIO_PGRP, p.Pid(), a.cfg.JobNice); err != nil {
			a.cfg.Logger.Warn("renice job", "job", j.key.String(), "err", err)
		}
	}
	started := a.cfg.Clock.Now()
	a.mu.Lock()
	j.startedAt, j.pid = started, p.Pid()
	a.mu.Unlock()
	a.notify()

	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		a.pump(j, p, m)
	}()
	exited := make(chan proc.Exit, 1)
	go func() { exited <- p.Wait() }()

	o := outcome{reason: hwppb.FinishReason_EXITED, started: started}
	var timeout, killAt <-chan time.Time
	if j.timeout > 0 {
		timeout = a.cfg.Clock.After(j.timeout)
	}
	term := func(grace time.Duration) {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			a.cfg.Logger.Warn("signal job", "job", j.key.String(), "err", err)
		}
		if killAt == nil {
			killAt = a.cfg.Clock.After(grace)
		}
	}
wait:
	for {
		select {
		case o.exit = <-exited:
			break wait
		case <-timeout:
			timeout = nil
			if o.reason == hwppb.FinishReason_EXITED {
				o.reason, o.message = hwppb.FinishReason_TIMED_OUT, fmt.Sprintf("timed out after %v", j.timeout)
			}
			term(j.grace)
		case <-killAt:
			_ = p.Signal(syscall.SIGKILL)
		case <-j.poke:
			a.mu.Lock()
			fenced, kill, cancel := j.fenced, j.kill, j.cancel
			why, msg, grace := j.cancelWhy, j.cancelMsg, j.cancelGrace
			a.mu.Unlock()
			switch {
			case fenced || kill:
				_ = p.Signal(syscall.SIGKILL)
				if o.reason == hwppb.FinishReason_EXITED {
					o.reason, o.message = hwppb.FinishReason_AGENT_STOPPED, "killed: agent exiting"
				}
			case cancel:
				if o.reason == hwppb.FinishReason_EXITED {
					o.reason, o.message = why, msg
				}
				term(grace)
			}
		}
	}
	// The script is gone; whatever it left running in its group goes too, so
	// the terminal is released and the output ends.
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-pumped:
	case <-a.cfg.Clock.After(readerDrainTimeout):
		// Something outside the group (setsid) still holds the terminal.
		_ = p.Close()
		<-pumped
	}
	_ = p.Close()
	return o
}

// jobEnv builds the job's environment: base, HODEI_*, assignment env, then
// secrets (later entries win).
func (a *Agent) jobEnv(j *job, dir string) []string {
	vars := map[string]string{}
	var keys []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			keys = append(keys, k)
		}
		vars[k] = v
	}
	for _, kv := range a.cfg.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	set("HODEI_JOB_ID", j.key.id)
	set("HODEI_JOB_ATTEMPT", strconv.FormatUint(uint64(j.key.attempt), 10))
	set("HODEI_WORKDIR", dir)
	envKeys := slices.Sorted(mapKeys(j.assign.GetEnv()))
	for _, k := range envKeys {
		set(k, j.assign.GetEnv()[k])
	}
	secKeys := slices.Sorted(mapKeys(j.assign.GetSecrets()))
	for _, k := range secKeys {
		set(k, j.assign.GetSecrets()[k])
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pump copies PTY output through the masker into the spool and wakes the
// sender. Nothing here waits for the network: a slow or absent server only
// makes the spool grow.
func (a *Agent) pump(j *job, p *proc.Process, m *mask.Masker) {
	buf := make([]byte, 32<<10)
	var out []byte
	for {
		n, err := p.Read(buf)
		if n > 0 {
			out = m.Write(out[:0], buf[:n])
			a.appendLog(j, out)
		}
		if err != nil {
			break
		}
	}
	a.appendLog(j, m.Flush(out[:0]))
}

func (a *Agent) appendLog(j *job, b []byte) {
	if len(b) == 0 {
		return
	}
	if _, err := j.spool.Append(b); err != nil {
		j.spoolErr.CompareAndSwap(nil, &err)
		a.cfg.Logger.Error("spool job output", "job", j.key.String(), "err", err)
	}
	a.notify()
}
