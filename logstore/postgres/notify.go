package postgres

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/internal/pglisten"
)

// maxPayload keeps a NOTIFY payload under PostgreSQL's 8000-byte limit.
const maxPayload = 7000

// notifier sends one NOTIFY per batch of changed logs, at most every
// Options.NotifyInterval, so a busy log costs one notification per interval
// instead of one per append (NOTIFY serialises committing transactions
// database-wide). It runs until ctx ends, sending what is pending first.
func (s *Store) notifier(ctx context.Context) {
	defer s.bg.Done()
	for {
		select {
		case <-s.kick:
		case <-ctx.Done():
			s.flushNotifications()
			return
		}
		s.flushNotifications()
		t := time.NewTimer(s.opts.NotifyInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

func (s *Store) flushNotifications() {
	s.pendMu.Lock()
	keys := s.pending
	if len(keys) == 0 {
		s.pendMu.Unlock()
		return
	}
	s.pending = make(map[key]struct{})
	s.pendMu.Unlock()
	var b strings.Builder
	send := func() {
		if b.Len() == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.OpTimeout)
		defer cancel()
		if _, err := s.fast.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, b.String()); err != nil {
			s.opts.Logger.Warn("logstore/postgres: notify; other processes' followers poll", "err", err)
		}
		b.Reset()
	}
	for k := range keys {
		line := k.job + "/" + strconv.FormatUint(uint64(k.attempt), 10)
		if b.Len() > 0 && b.Len()+1+len(line) > maxPayload {
			send()
		}
		if b.Len() == 0 {
			b.WriteString(s.id)
		}
		b.WriteByte('\n')
		b.WriteString(line)
	}
	send()
}

// listen keeps a LISTEN connection open and wakes this process's followers
// of the logs other processes change. It is only a hint: followers also
// poll, so a notification lost while the connection is down costs at most a
// poll interval.
func (s *Store) listen(ctx context.Context) {
	defer s.bg.Done()
	pglisten.Loop(ctx, func(err error) {
		s.opts.Logger.Warn("logstore/postgres: listener connection lost; followers poll until it is back", "err", err)
	}, s.listenOnce)
}

func (s *Store) listenOnce(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "hodei-logs-listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		from, lines, _ := strings.Cut(n.Payload, "\n")
		if from == s.id {
			continue // already woken in-process
		}
		for line := range strings.SplitSeq(lines, "\n") {
			job, a, ok := strings.Cut(line, "/")
			attempt, err := strconv.ParseUint(a, 10, 32)
			if ok && err == nil {
				s.wake(key{job: job, attempt: uint32(attempt)})
			}
		}
	}
}
