package agentbench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/agent/agenttest"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// Fake adapts the agenttest fake server to Server.
func Fake(s *agenttest.Server) Server { return fakeServer{s} }

type fakeServer struct{ s *agenttest.Server }

func (f fakeServer) Addr() string { return f.s.Addr() }

func (f fakeServer) WaitAgent(ctx context.Context, name string) error {
	return f.s.WaitFor(ctx, func() bool { return f.s.Connected(name) })
}

func (f fakeServer) StartJob(ctx context.Context, agentName string, job Job) (Log, error) {
	ch, cancel := f.s.Subscribe(job.ID, 1)
	err := f.s.Assign(agentName, &hwppb.Assign{JobId: job.ID, Attempt: 1, Script: job.Script, WorkingDir: job.WorkingDir})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start job %s: %w", job.ID, err)
	}
	return &fakeLog{s: f.s, agent: agentName, id: job.ID, ch: ch, cancel: cancel}, nil
}

type fakeLog struct {
	s      *agenttest.Server
	agent  string
	id     string
	ch     <-chan agenttest.Chunk
	cancel func()
	once   sync.Once
}

func (l *fakeLog) Next(ctx context.Context) ([]byte, time.Time, error) {
	select {
	case c := <-l.ch:
		return c.Data, c.At, nil
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	}
}

func (l *fakeLog) Stored() int64 { return int64(l.s.LogSize(l.id, 1)) }

func (l *fakeLog) Stop(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		l.cancel()
		if f, _ := l.s.Finished(l.id, 1); f == nil {
			err = l.s.Cancel(l.agent, l.id, 1, time.Second)
		}
	})
	return err
}

// InProcessAgent returns a StartFunc that runs an agent in this process with
// cfg (Server and Name are filled in). stop drains it and waits for Run.
func InProcessAgent(srvAddr string, cfg agent.Config) StartFunc {
	return func(ctx context.Context, name string) (func() error, error) {
		c := cfg
		c.Server, c.Name = srvAddr, name
		a, err := agent.New(c)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return func() error {
			a.Drain(true)
			select {
			case err := <-done:
				cancel()
				return err
			case <-time.After(30 * time.Second):
				cancel()
				return <-done
			}
		}, nil
	}
}
