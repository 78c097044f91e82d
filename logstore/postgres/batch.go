package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// maxBatch bounds the appends one round trip carries.
const maxBatch = 64

// write is one append statement on its way to the database.
type write struct {
	sql  string
	args []any
	rows int64 // rows affected
	err  error
	done chan struct{}
}

// exec runs an append statement through the writers and returns the rows
// it affected. Appends to one log are serialised by its entry's lock, so a
// batch never holds two writes of one log and batches never contend for
// rows.
func (s *Store) exec(sql string, args ...any) (int64, error) {
	w := &write{sql: sql, args: args, done: make(chan struct{})}
	s.writes <- w
	<-w.done
	return w.rows, w.err
}

// writer takes appends as they come and sends whatever has queued up
// meanwhile (up to maxBatch) in one pipelined round trip, which PostgreSQL
// runs as one implicit transaction with one (asynchronous) commit. Under
// load, appends to many logs thus share round trips and commits; alone, an
// append goes out at once. It runs until ctx ends; Close ends it only once
// no append is in flight.
func (s *Store) writer(ctx context.Context) {
	defer s.bg.Done()
	batch := make([]*write, 0, maxBatch)
	for {
		select {
		case w := <-s.writes:
			batch = append(batch[:0], w)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case w := <-s.writes:
				batch = append(batch, w)
			default:
				break more
			}
		}
		s.run(batch)
	}
}

func (s *Store) run(batch []*write) {
	ctx, cancel := s.opCtx()
	defer cancel()
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if len(batch) > 1 {
		b := &pgx.Batch{}
		for _, w := range batch {
			b.Queue(w.sql, w.args...)
		}
		br := s.fast.SendBatch(ctx, b)
		var err error
		for _, w := range batch {
			tag, e := br.Exec()
			if e != nil {
				err = e
				break
			}
			w.rows = tag.RowsAffected()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return
		}
		// One failure rolls the whole batch back: run each on its own, so
		// only the failing one fails. (Re-running one that did commit is
		// harmless: its condition no longer holds and its caller rereads.)
	}
	for _, w := range batch {
		tag, err := s.fast.Exec(ctx, w.sql, w.args...)
		w.rows, w.err = tag.RowsAffected(), err
	}
}
