package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// errExit ends the last session after Goodbye.
var errExit = errors.New("agent done")

// session is one connected stream. Its sender is the only goroutine that
// calls Send; control messages reach it through ctrl, job output and job
// state through the Agent's job table (woken by Agent.wake).
type session struct {
	ctx          context.Context
	ctrl         chan *hwppb.AgentMessage
	drainingSent bool
	hbSeq        uint64
}

// enqueue hands a control message to the sender; it gives up when the
// session ends.
func (s *session) enqueue(m *hwppb.AgentMessage) {
	select {
	case s.ctrl <- m:
	case <-s.ctx.Done():
	}
}

// session runs one connection: Hello/Welcome, then a receiver, a heartbeat
// loop and the sender until the stream breaks or the agent is done
// (errExit). welcomed reports whether the server accepted us.
func (a *Agent) session(ctx context.Context) (welcomed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, release, err := a.cfg.Dialer.Dial(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	s := &session{ctx: ctx, ctrl: make(chan *hwppb.AgentMessage, 256)}

	// Handshake, bounded by HandshakeTimeout (cancelling ctx aborts Recv).
	hs := time.AfterFunc(a.cfg.HandshakeTimeout, cancel)
	if err := st.Send(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: a.hello()}}); err != nil {
		hs.Stop()
		return false, fmt.Errorf("send hello: %w", err)
	}
	first, err := st.Recv()
	if !hs.Stop() {
		return false, fmt.Errorf("handshake: no answer to hello within %v", a.cfg.HandshakeTimeout)
	}
	if err != nil {
		return false, fmt.Errorf("handshake: %w", err)
	}
	switch m := first.GetMsg().(type) {
	case *hwppb.ServerMessage_Welcome:
		if err := a.welcome(m.Welcome); err != nil {
			return false, err
		}
		a.persistIdentity()
		a.markWelcomed()
	case *hwppb.ServerMessage_Refused:
		return false, &RefusedError{Code: m.Refused.GetCode(), Message: m.Refused.GetMessage()}
	default:
		return false, fmt.Errorf("handshake: server sent %T before welcome", first.GetMsg())
	}
	a.cfg.Logger.Info("connected", "worker_id", a.WorkerID())

	var wg sync.WaitGroup
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	wg.Go(func() {
		defer close(recvDone)
		recvErr <- a.receive(s, st)
		cancel()
	})
	wg.Go(func() { a.heartbeats(s) })
	err = a.send(s, st)
	if errors.Is(err, errExit) {
		// Goodbye is sent and our side closed: let the server see it and end
		// the stream before we cancel it (which could drop it unsent).
		select {
		case <-recvDone:
		case <-a.cfg.Clock.After(goodbyeTimeout):
		}
	}
	cancel()
	wg.Wait()
	if errors.Is(err, errExit) {
		return true, err
	}
	select {
	case rerr := <-recvErr:
		if rerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
			err = rerr
		}
	default:
	}
	return true, err
}

// receive handles server messages until the stream ends. Bad or unknown
// messages are logged and skipped, never trusted.
func (a *Agent) receive(s *session, st Stream) error {
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("receive: server closed the stream")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		switch x := m.GetMsg().(type) {
		case *hwppb.ServerMessage_Assign:
			if x.Assign != nil {
				a.assign(s, x.Assign)
			}
		case *hwppb.ServerMessage_Cancel:
			c := x.Cancel
			a.mu.Lock()
			if j := a.jobs[jobKey{c.GetJobId(), c.GetAttempt()}]; j != nil {
				grace := time.Duration(0)
				if g := c.GetGrace(); g != nil && g.IsValid() && g.AsDuration() > 0 {
					grace = g.AsDuration()
				}
				a.cfg.Logger.Info("cancel", "job", j.key.String(), "reason", c.GetReason())
				a.cancelLocked(j, hwppb.FinishReason_CANCELLED, "cancelled: "+c.GetReason(), grace)
			}
			a.mu.Unlock()
		case *hwppb.ServerMessage_Fence:
			a.fence(x.Fence)
		case *hwppb.ServerMessage_Drain:
			a.mu.Lock()
			a.beginDrainLocked("server: "+x.Drain.GetReason(), x.Drain.GetCancelRunning())
			a.mu.Unlock()
			a.notify()
		case *hwppb.ServerMessage_TokenRefresh:
			if t := x.TokenRefresh.GetToken(); t != "" {
				a.mu.Lock()
				a.identity, a.identityExp = t, time.Time{}
				if e := x.TokenRefresh.GetExpiresAt(); e != nil && e.IsValid() {
					a.identityExp = e.AsTime()
				}
				a.setCertLocked(x.TokenRefresh.GetClientCertificate())
				a.mu.Unlock()
				a.persistIdentity()
			}
		case *hwppb.ServerMessage_LogAck:
			a.logAck(x.LogAck)
		case *hwppb.ServerMessage_Welcome, *hwppb.ServerMessage_Refused:
			a.cfg.Logger.Warn("unexpected handshake message after welcome", "type", fmt.Sprintf("%T", x))
		default:
			// A newer server's message: ignore (minor versions interoperate).
		}
	}
}

// heartbeats sends one heartbeat at once and then one per interval.
func (a *Agent) heartbeats(s *session) {
	for {
		t, err := a.cfg.Sampler.Sample()
		if err != nil {
			a.cfg.Logger.Debug("sample telemetry", "err", err)
		}
		a.mu.Lock()
		s.hbSeq++
		hb := &hwppb.Heartbeat{
			Seq:               s.hbSeq,
			Time:              timestamppb.New(a.cfg.Clock.Now()),
			CpuPercent:        t.CPUPercent,
			MemoryUsedBytes:   t.MemUsedBytes,
			MemoryTotalBytes:  t.MemTotalBytes,
			ProcessCpuPercent: t.ProcCPUPercent,
			ProcessRssBytes:   t.ProcRSSBytes,
			FreeSlots:         uint32(max(a.cfg.Slots-a.busyLocked(), 0)),
			Draining:          a.draining,
		}
		for _, j := range a.order {
			if !j.finished && !j.fenced {
				hb.Running = append(hb.Running, &hwppb.JobRef{JobId: j.key.id, Attempt: j.key.attempt})
			}
		}
		every := a.heartbeat
		a.mu.Unlock()
		s.enqueue(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Heartbeat{Heartbeat: hb}})
		select {
		case <-s.ctx.Done():
			return
		case <-a.cfg.Clock.After(every):
		}
	}
}

// send is the session's only writer. Control messages (heartbeats,
// rejections) go first; then jobs are served round-robin, one message per
// job per turn, so a job flooding output delays another job's next chunk by
// at most one chunk per flooding job. Nothing waits for acknowledgements.
func (a *Agent) send(s *session, st Stream) error {
	for {
		select {
		case m := <-s.ctrl:
			if err := st.Send(m); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			continue
		default:
		}
		m, wait, exit := a.next(s)
		if m != nil {
			if err := st.Send(m); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			continue
		}
		if exit != nil {
			if err := st.Send(exit); err != nil {
				return fmt.Errorf("send goodbye: %w", err)
			}
			_ = st.CloseSend()
			return errExit
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = a.cfg.Clock.After(wait)
		}
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case m := <-s.ctrl:
			if err := st.Send(m); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		case <-a.wake:
		case <-timer:
		}
	}
}

// next picks the next job message to send. With nothing to send it returns
// how long until a held-back (flush interval) chunk is due, or, when a drain
// or stop is complete, the Goodbye to end with.
func (a *Agent) next(s *session) (m *hwppb.AgentMessage, wait time.Duration, exit *hwppb.AgentMessage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining && !s.drainingSent {
		s.drainingSent = true
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Draining{Draining: &hwppb.Draining{Reason: a.drainReason}}}, 0, nil
	}
	n := len(a.order)
	now := a.cfg.Clock.Now()
	// Two passes: first whatever is small (job events, short log tails:
	// interactive output), then everything round-robin. A job that floods
	// output thus never delays another job's few bytes by more than what is
	// already in flight.
	for _, smallOnly := range []bool{true, false} {
		for i := range n {
			j := a.order[(a.rr+i)%n]
			if j.fenced {
				continue
			}
			m, w := a.jobMessageLocked(j, now, smallOnly)
			if m != nil {
				a.rr = (a.rr + i + 1) % n
				return m, 0, nil
			}
			if w > 0 && (wait == 0 || w < wait) {
				wait = w
			}
		}
	}
	if wait == 0 && a.exitReadyLocked() {
		r, msg := hwppb.Goodbye_DRAINED, "drained"
		if a.stopping {
			r, msg = hwppb.Goodbye_STOPPED, "stopped"
		}
		return nil, 0, &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Goodbye{Goodbye: &hwppb.Goodbye{Reason: r, Message: msg}}}
	}
	return nil, wait, nil
}

// jobMessageLocked returns the job's next message, in protocol order:
// JobAccepted, JobStarted, LogChunks, JobFinished.
//
// Log data is held back while the attempt has MaxInflightLog bytes sent but
// not acknowledged (LogAck wakes the sender): bytes queued in the gRPC and
// TCP buffers add latency for every other job, so a flooding job may only
// keep a bounded amount in flight. With smallOnly, only job events and logs
// with at most smallChunk pending bytes are considered.
func (a *Agent) jobMessageLocked(j *job, now time.Time, smallOnly bool) (*hwppb.AgentMessage, time.Duration) {
	if !j.acceptedSent {
		j.acceptedSent = true
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobAccepted{JobAccepted: &hwppb.JobAccepted{JobId: j.key.id, Attempt: j.key.attempt}}}, 0
	}
	if !j.startedSent && !j.startedAt.IsZero() {
		j.startedSent = true
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobStarted{JobStarted: &hwppb.JobStarted{
			JobId: j.key.id, Attempt: j.key.attempt, Pid: int64(j.pid), StartedAt: timestamppb.New(j.startedAt)}}}, 0
	}
	size := uint64(j.spool.Size())
	if j.sent < size {
		pending := size - j.sent
		if smallOnly && pending > smallChunk {
			return nil, 0
		}
		if a.inflight > 0 && j.sent-min(j.acked, j.sent) >= a.inflight {
			return nil, 0 // LogAck will wake the sender
		}
		if a.flushEvery > 0 && !j.finished && pending < uint64(a.maxChunk) {
			// Throttle with a leading edge: output after a quiet spell goes
			// at once; a trickle is coalesced to one partial chunk per
			// interval.
			if due := j.lastSend.Add(a.flushEvery); now.Before(due) {
				return nil, due.Sub(now)
			}
		}
		n := min(pending, uint64(a.maxChunk))
		data := make([]byte, n)
		got, err := j.spool.ReadAt(data, int64(j.sent))
		if err != nil || got == 0 {
			a.cfg.Logger.Error("read spool", "job", j.key.String(), "offset", j.sent, "err", err)
			return nil, 0
		}
		j.seq++
		m := &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_LogChunk{LogChunk: &hwppb.LogChunk{
			JobId: j.key.id, Attempt: j.key.attempt, Seq: j.seq, Offset: j.sent, Data: data[:got]}}}
		j.sent += uint64(got)
		j.lastSend = now
		return m, 0
	}
	if j.finished && j.fin != nil && !j.finishSent && j.sent >= j.fin.GetLogBytes() {
		j.finishSent = true
		return &hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobFinished{JobFinished: j.fin}}, 0
	}
	return nil, 0
}
