package agenttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Major and Minor are the protocol version the server speaks; zero means
	// hwppb.ProtocolMajor/ProtocolMinor.
	Major, Minor uint32
	// HeartbeatInterval is sent in Welcome; zero means 5s.
	HeartbeatInterval time.Duration
	// MaxLogChunk is sent in Welcome's limits; zero leaves the agent default.
	MaxLogChunk uint32
	// FlushInterval and MaxInflight are sent in Welcome's limits.
	FlushInterval time.Duration
	MaxInflight   uint32
	// NoResume leaves Welcome.resume empty, so agents resend from their acked
	// offset (the server then drops the bytes it already holds).
	NoResume bool
	// NoAck stops LogAck messages (logs and finishes stay unacknowledged).
	NoAck bool
	// Token, when set, is the only join token accepted.
	Token string
	// MaxStoredBytes, when set, stops keeping log bytes past that size per
	// attempt (offsets and sizes are still tracked): for floods.
	MaxStoredBytes int
}

// Chunk is log data as a subscriber sees it.
type Chunk struct {
	Offset uint64
	Data   []byte
	At     time.Time // when the server received it
}

// Server is a fake HWP server on loopback. Its state (logs, events) survives
// Stop/Start, so a test can drop every connection and restart on the same
// address.
type Server struct {
	opts Options

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change
	addr      string
	gs        *grpc.Server
	lis       net.Listener
	serveDone chan struct{}
	conns     map[string]*conn // by agent name: the live connection
	hellos    []*hwppb.Hello
	beats     []*hwppb.Heartbeat
	rejected  []*hwppb.JobRejected
	accepted  []*hwppb.JobAccepted
	started   []*hwppb.JobStarted
	goodbyes  []*hwppb.Goodbye
	drainings []*hwppb.Draining
	logs      map[key]*jobLog
	violation []string
	tokens    int
}

type key struct {
	job     string
	attempt uint32
}

type jobLog struct {
	size     uint64 // log length received (>= len(data))
	data     []byte
	chunks   int
	dupBytes int
	finished *hwppb.JobFinished
	finishes int
	subs     []chan Chunk
	lastSeq  uint64
}

type conn struct {
	name string
	out  chan *hwppb.ServerMessage
	done chan struct{}
}

// New returns a stopped server; call Start.
func New(opts Options) *Server {
	if opts.Major == 0 && opts.Minor == 0 {
		opts.Major, opts.Minor = hwppb.ProtocolMajor, hwppb.ProtocolMinor
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	return &Server{
		opts:    opts,
		changed: make(chan struct{}),
		conns:   map[string]*conn{},
		logs:    map[key]*jobLog{},
	}
}

// Start listens on addr ("127.0.0.1:0" picks a port; after a Stop, "" reuses
// the previous address) and serves until Stop.
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gs != nil {
		return errors.New("start fake server: already serving")
	}
	if addr == "" {
		addr = s.addr
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start fake server: %w", err)
	}
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	hwppb.RegisterWorkerProtocolServer(gs, &service{s: s})
	s.addr, s.gs, s.lis = lis.Addr().String(), gs, lis
	done := make(chan struct{})
	s.serveDone = done
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	return nil
}

// Addr returns the address agents dial.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and drops every connection at once (agents see the
// stream break). It waits for the handlers to return.
func (s *Server) Stop() {
	s.mu.Lock()
	gs, done := s.gs, s.serveDone
	s.gs = nil
	s.mu.Unlock()
	if gs == nil {
		return
	}
	gs.Stop()
	<-done
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor blocks until cond returns true (it is re-checked after every state
// change) or ctx ends. cond may call the Server's accessors.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for fake server state: %w", ctx.Err())
		}
	}
}

// Connected reports whether an agent with this name has a live, welcomed
// connection.
func (s *Server) Connected(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[name]
	return ok
}

// Send queues msg for the named agent's live connection.
func (s *Server) Send(name string, msg *hwppb.ServerMessage) error {
	s.mu.Lock()
	c := s.conns[name]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("send to agent %q: not connected", name)
	}
	select {
	case c.out <- msg:
		return nil
	case <-c.done:
		return fmt.Errorf("send to agent %q: connection closed", name)
	}
}

// Assign sends an assignment to the named agent.
func (s *Server) Assign(name string, a *hwppb.Assign) error {
	return s.Send(name, &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Assign{Assign: a}})
}

// Cancel sends a cancel for one attempt.
func (s *Server) Cancel(name, job string, attempt uint32, grace time.Duration) error {
	return s.Send(name, &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Cancel{Cancel: &hwppb.Cancel{
		JobId: job, Attempt: attempt, Reason: "test cancel", Grace: durationpb.New(grace)}}})
}

// Fence tells the agent an attempt is stale.
func (s *Server) Fence(name, job string, attempt uint32) error {
	return s.Send(name, &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Fence{Fence: &hwppb.Fence{
		JobId: job, Attempt: attempt, Reason: "stale attempt"}}})
}

// Drain asks the agent to drain (or stop, with cancel).
func (s *Server) Drain(name string, cancel bool) error {
	return s.Send(name, &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Drain{Drain: &hwppb.Drain{
		Reason: "test drain", CancelRunning: cancel}}})
}

// Log returns a copy of the stored log of one attempt.
func (s *Server) Log(job string, attempt uint32) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[key{job, attempt}]; l != nil {
		return slices.Clone(l.data)
	}
	return nil
}

// LogSize returns the length of one attempt's log as received.
func (s *Server) LogSize(job string, attempt uint32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[key{job, attempt}]; l != nil {
		return l.size
	}
	return 0
}

// LogStats returns the number of chunks received and the bytes received that
// the server already held (resends) for one attempt.
func (s *Server) LogStats(job string, attempt uint32) (chunks, dupBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[key{job, attempt}]; l != nil {
		return l.chunks, l.dupBytes
	}
	return 0, 0
}

// Finished returns the JobFinished received for one attempt, if any, and how
// many times it was received.
func (s *Server) Finished(job string, attempt uint32) (*hwppb.JobFinished, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[key{job, attempt}]; l != nil {
		return l.finished, l.finishes
	}
	return nil, 0
}

// Started returns the JobStarted messages received, oldest first.
func (s *Server) Started() []*hwppb.JobStarted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.started)
}

// Accepted returns the JobAccepted messages received.
func (s *Server) Accepted() []*hwppb.JobAccepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// Rejected returns the JobRejected messages received.
func (s *Server) Rejected() []*hwppb.JobRejected {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejected)
}

// Hellos returns every Hello received, oldest first.
func (s *Server) Hellos() []*hwppb.Hello {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hellos)
}

// Heartbeats returns every Heartbeat received.
func (s *Server) Heartbeats() []*hwppb.Heartbeat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.beats)
}

// Goodbyes returns every Goodbye received.
func (s *Server) Goodbyes() []*hwppb.Goodbye {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.goodbyes)
}

// Drainings returns every Draining notice received.
func (s *Server) Drainings() []*hwppb.Draining {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.drainings)
}

// Violations returns protocol violations seen (gaps in a log, a finish whose
// size does not match the log, messages for unknown attempts...).
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violation)
}

// Subscribe streams one attempt's log as it arrives (from now on). The channel
// is buffered; when the subscriber falls behind, chunks are dropped for it
// rather than blocking the agent. cancel ends the subscription.
func (s *Server) Subscribe(job string, attempt uint32) (ch <-chan Chunk, cancel func()) {
	c := make(chan Chunk, 1<<14)
	s.mu.Lock()
	l := s.logLocked(key{job, attempt})
	l.subs = append(l.subs, c)
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		l.subs = slices.DeleteFunc(l.subs, func(x chan Chunk) bool { return x == c })
	}
}

func (s *Server) logLocked(k key) *jobLog {
	l := s.logs[k]
	if l == nil {
		l = &jobLog{}
		s.logs[k] = l
	}
	return l
}

type service struct {
	hwppb.UnimplementedWorkerProtocolServer
	s *Server
}

// Connect serves one agent stream.
func (v *service) Connect(stream hwppb.WorkerProtocol_ConnectServer) error {
	s := v.s
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return errors.New("fake server: first message is not Hello")
	}
	s.mu.Lock()
	s.hellos = append(s.hellos, hello)
	s.notifyLocked()
	s.mu.Unlock()

	if v := hello.GetProtocolVersion(); v.GetMajor() != s.opts.Major {
		return stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: &hwppb.Refused{
			Code: hwppb.Refused_INCOMPATIBLE_VERSION,
			Message: fmt.Sprintf("incompatible protocol version: agent speaks HWP %d.%d, server speaks %d.%d; upgrade the older side",
				v.GetMajor(), v.GetMinor(), s.opts.Major, s.opts.Minor),
			ServerVersion: &hwppb.Version{Major: s.opts.Major, Minor: s.opts.Minor},
		}}})
	}
	if s.opts.Token != "" && hello.GetCredentials().GetJoinToken() != s.opts.Token && hello.GetCredentials().GetIdentityToken() == "" {
		return stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: &hwppb.Refused{
			Code: hwppb.Refused_UNAUTHENTICATED, Message: "unknown join token"}}})
	}

	name := hello.GetName()
	c := &conn{name: name, out: make(chan *hwppb.ServerMessage, 1024), done: make(chan struct{})}
	welcome := &hwppb.Welcome{
		WorkerId:          "w-" + name,
		ProtocolVersion:   &hwppb.Version{Major: s.opts.Major, Minor: min(s.opts.Minor, hello.GetProtocolVersion().GetMinor())},
		HeartbeatInterval: durationpb.New(s.opts.HeartbeatInterval),
		Limits: &hwppb.Limits{MaxLogChunkBytes: s.opts.MaxLogChunk, MaxInflightLogBytes: s.opts.MaxInflight,
			LogFlushInterval: durationpb.New(s.opts.FlushInterval)},
		ServerVersion: "agenttest",
	}
	s.mu.Lock()
	s.tokens++
	welcome.IdentityToken = fmt.Sprintf("identity-%s-%d", name, s.tokens)
	welcome.IdentityExpiresAt = timestamppb.New(time.Now().Add(15 * time.Minute))
	if !s.opts.NoResume {
		for _, r := range hello.GetRunningJobs() {
			l := s.logLocked(key{r.GetJobId(), r.GetAttempt()})
			welcome.Resume = append(welcome.Resume, &hwppb.JobOffset{JobId: r.GetJobId(), Attempt: r.GetAttempt(), Offset: l.size})
		}
	}
	if old := s.conns[name]; old != nil {
		s.violation = append(s.violation, fmt.Sprintf("agent %q connected twice", name))
	}
	s.conns[name] = c
	s.mu.Unlock()
	if err := stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()

	ctx := stream.Context()
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case m := <-c.out:
				if err := stream.Send(m); err != nil {
					sendErr <- err
					return
				}
			case <-c.done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	defer func() {
		close(c.done)
		wg.Wait()
		s.mu.Lock()
		if s.conns[name] == c {
			delete(s.conns, name)
		}
		s.notifyLocked()
		s.mu.Unlock()
	}()
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case err := <-sendErr:
			return err
		default:
		}
		s.handle(c, m)
	}
}

func (s *Server) ack(c *conn, m *hwppb.LogAck) {
	if s.opts.NoAck {
		return
	}
	select {
	case c.out <- &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_LogAck{LogAck: m}}:
	case <-c.done:
	}
}

func (s *Server) handle(c *conn, m *hwppb.AgentMessage) {
	now := time.Now()
	var ack *hwppb.LogAck
	s.mu.Lock()
	switch x := m.GetMsg().(type) {
	case *hwppb.AgentMessage_LogChunk:
		ch := x.LogChunk
		k := key{ch.GetJobId(), ch.GetAttempt()}
		l := s.logLocked(k)
		l.chunks++
		off, data := ch.GetOffset(), ch.GetData()
		// Sequence numbers grow across reconnects; a lower one is a resend.
		l.lastSeq = max(l.lastSeq, ch.GetSeq())
		have := l.size
		switch {
		case off > have:
			s.violation = append(s.violation, fmt.Sprintf("log %s/%d: gap: chunk at %d, have %d", k.job, k.attempt, off, have))
			data = nil
		case off < have:
			dup := min(have-off, uint64(len(data)))
			l.dupBytes += int(dup)
			data = data[dup:]
			off = have
		}
		if len(data) > 0 {
			l.size += uint64(len(data))
			if s.opts.MaxStoredBytes == 0 || len(l.data)+len(data) <= s.opts.MaxStoredBytes {
				l.data = append(l.data, data...)
			}
			for _, sub := range l.subs {
				select {
				case sub <- Chunk{Offset: off, Data: data, At: now}:
				default:
				}
			}
		}
		ack = &hwppb.LogAck{JobId: k.job, Attempt: k.attempt, Offset: l.size}
	case *hwppb.AgentMessage_JobFinished:
		f := x.JobFinished
		k := key{f.GetJobId(), f.GetAttempt()}
		l := s.logLocked(k)
		l.finishes++
		if l.finished == nil {
			l.finished = f
		}
		if f.GetLogBytes() != l.size {
			s.violation = append(s.violation, fmt.Sprintf("log %s/%d: finished with %d bytes, server holds %d", k.job, k.attempt, f.GetLogBytes(), l.size))
		} else {
			ack = &hwppb.LogAck{JobId: k.job, Attempt: k.attempt, Offset: l.size, Finished: true}
		}
	case *hwppb.AgentMessage_Heartbeat:
		s.beats = append(s.beats, x.Heartbeat)
	case *hwppb.AgentMessage_JobAccepted:
		s.accepted = append(s.accepted, x.JobAccepted)
	case *hwppb.AgentMessage_JobRejected:
		s.rejected = append(s.rejected, x.JobRejected)
	case *hwppb.AgentMessage_JobStarted:
		s.started = append(s.started, x.JobStarted)
	case *hwppb.AgentMessage_Draining:
		s.drainings = append(s.drainings, x.Draining)
	case *hwppb.AgentMessage_Goodbye:
		s.goodbyes = append(s.goodbyes, x.Goodbye)
	case *hwppb.AgentMessage_Hello:
		s.violation = append(s.violation, "second Hello on one stream")
	}
	s.notifyLocked()
	s.mu.Unlock()
	if ack != nil {
		s.ack(c, ack)
	}
}
