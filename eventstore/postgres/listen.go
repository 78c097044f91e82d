package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/internal/pglisten"
)

// listen keeps a LISTEN connection open and turns NOTIFYs from other
// processes' committers into Bus.Advance, which wakes this process's
// subscriptions to read the database. It is only a hint: subscriptions also
// poll, so a notification lost while the connection is down costs at most a
// poll interval. Notifications from this process's own committer are skipped:
// those events are already published with their content.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenerDone)
	pglisten.Loop(ctx, func(err error) {
		s.opts.Logger.Warn("eventstore/postgres: listener connection lost; subscriptions poll until it is back", "err", err)
	}, s.listenOnce)
}

func (s *Store) listenOnce(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "hodei-listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer conn.Close(context.Background())
	if err := setRole(ctx, conn, s.opts.Role); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Whatever was committed while nobody listened.
	head, err := s.readHead(ctx, conn)
	if err != nil {
		return err
	}
	s.bus.Advance(head.Position)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.PID == s.leaderPID.Load() {
			continue
		}
		if pos, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
			s.bus.Advance(pos)
		}
	}
}
