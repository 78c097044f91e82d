package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// Stream is the agent's end of one HWP connection. Send is called from one
// goroutine and Recv from another; CloseSend after the last Send.
type Stream interface {
	Send(*hwppb.AgentMessage) error
	Recv() (*hwppb.ServerMessage, error)
	CloseSend() error
}

// Dialer opens one HWP stream. The stream lives until ctx is cancelled or it
// breaks; release frees what Dial allocated (it is called once, after the
// stream is done).
type Dialer interface {
	Dial(ctx context.Context) (s Stream, release func(), err error)
}

// GRPCDialer dials the hodei server with gRPC. Each Dial makes a new client
// connection so that the agent's own jittered backoff is the only retry
// policy in play.
type GRPCDialer struct {
	Addr string      // host:port
	TLS  *tls.Config // nil: plaintext (loopback and tests only)
	// Keepalive is the interval of HTTP/2 pings that detect a dead server
	// (the server must permit it); 0 means 20s.
	Keepalive time.Duration
}

// Dial implements Dialer.
func (d GRPCDialer) Dial(ctx context.Context) (Stream, func(), error) {
	creds := insecure.NewCredentials()
	if d.TLS != nil {
		creds = credentials.NewTLS(d.TLS)
	}
	ka := d.Keepalive
	if ka <= 0 {
		ka = 20 * time.Second
	}
	cc, err := grpc.NewClient(d.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	st, err := hwppb.NewWorkerProtocolClient(cc).Connect(ctx)
	if err != nil {
		_ = cc.Close()
		return nil, nil, fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	return st, func() { _ = cc.Close() }, nil
}
