package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
)

// PostgresTarget measures the PostgreSQL event store (eventstore/postgres).
// Each Open and RawLoop works in a scratch database it creates through
// AdminDSN and drops when done, so the server needs no preparation; the role
// needs CREATEDB, and for the store's migrations the rights to create roles
// (the cluster's superuser, as .ci/postgres.sh gives).
//
// The raw loop (RawLoop) COPYs the same rows into a table shaped like
// es_events in transactions of the batch size with synchronous_commit on,
// as the store commits; RawKVLoop, a looser limit, COPYs records of the same
// size into a plain (key, value) table.
type PostgresTarget struct {
	// AdminDSN connects as a role that may create and drop databases.
	AdminDSN string
	// Options are the store's options (the zero value: production defaults).
	Options postgres.Options

	mu sync.Mutex
	n  int
}

// Name implements Target.
func (t *PostgresTarget) Name() string { return "postgres" }

// scratch creates a fresh database and returns its DSN and a func that drops it.
func (t *PostgresTarget) scratch(ctx context.Context, kind string) (string, func() error, error) {
	t.mu.Lock()
	t.n++
	n := t.n
	t.mu.Unlock()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("hodei_bench_%s_%s_%d", kind, hex.EncodeToString(r[:]), n)
	dsn, err := postgres.CreateDatabase(ctx, t.AdminDSN, name)
	if err != nil {
		return "", nil, err
	}
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return postgres.DropDatabase(ctx, t.AdminDSN, name)
	}
	return dsn, drop, nil
}

// Open implements Target.
func (t *PostgresTarget) Open(ctx context.Context) (Opened, error) {
	dsn, drop, err := t.scratch(ctx, "store")
	if err != nil {
		return Opened{}, err
	}
	s, err := postgres.Open(ctx, dsn, t.Options)
	if err != nil {
		return Opened{}, errors.Join(err, drop())
	}
	var once sync.Once
	var rerr error
	return Opened{
		Store: s,
		CommitStats: func() (uint64, uint64) {
			st := s.Stats()
			return st.Commits, st.Events
		},
		Release: func() error {
			once.Do(func() { rerr = errors.Join(s.Close(), drop()) })
			return rerr
		},
	}, nil
}

// RawLoop implements Target: the limit for the store's rows. It loads a
// table shaped exactly like es_events (created LIKE it, with its columns,
// checks, primary key and unique constraints, but none of the store's
// triggers, head row, stream table or hash chain) with binary COPY in
// transactions of batchSize rows and synchronous_commit on, the committer's
// own COPY encoding (postgres.AppendCopy) and the bench's rows: recordSize
// is the stored envelope size the payloads are cut to, time-ordered event
// ids, and each transaction holds one event of each of batchSize streams,
// DefaultStreamEvents events per stream, as batchSize appenders produce.
// What is left between this and the store is the store's own work.
func (t *PostgresTarget) RawLoop(ctx context.Context, records, batchSize, recordSize int) (_ float64, err error) {
	return t.rawLoop(ctx, "events", records, batchSize, recordSize, func(conn *pgx.Conn) (func(buf []byte, from, to int) []byte, string, error) {
		if _, err := conn.Exec(ctx, "CREATE TABLE raw_events (LIKE es_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"); err != nil {
			return nil, "", err
		}
		pl := newPayloads(recordSize)
		corr := eventstore.NewID()
		now := time.Now()
		var evs []eventstore.Envelope
		encode := func(buf []byte, from, to int) []byte {
			evs = evs[:0]
			tx := from / batchSize
			for i := from; i < to; i++ {
				a := i - from
				stream := streamName(a, tx/DefaultStreamEvents)
				e := eventstore.Envelope{Position: uint64(i + 1), StreamID: stream,
					StreamVersion: uint64(tx%DefaultStreamEvents + 1), Type: benchType, SchemaVersion: 1,
					EventID: eventstore.NewID(), Time: now, Actor: benchActor, CorrelationID: corr,
					Payload: pl.forStream(stream)}
				binary.BigEndian.PutUint64(e.PrevHash[:], uint64(i))
				binary.BigEndian.PutUint64(e.Hash[:], uint64(i+1))
				evs = append(evs, e)
			}
			return postgres.AppendCopy(buf, evs)
		}
		return encode, "COPY raw_events (" + postgres.EventColumns + ") FROM STDIN (FORMAT binary)", nil
	})
}

// RawKVLoop is a second, looser limit: the same number of records of
// recordSize bytes into a plain (key bigint PRIMARY KEY, value bytea) table,
// the engine's equivalent of the keyed bucket the bolt raw loop fills. It
// shows what the events table's shape (thirteen columns, two unique indexes
// besides the key, one on random-order stream names) costs PostgreSQL
// itself.
func (t *PostgresTarget) RawKVLoop(ctx context.Context, records, batchSize, recordSize int) (_ float64, err error) {
	return t.rawLoop(ctx, "kv", records, batchSize, recordSize, func(conn *pgx.Conn) (func(buf []byte, from, to int) []byte, string, error) {
		if _, err := conn.Exec(ctx, "CREATE TABLE raw_records (key bigint PRIMARY KEY, value bytea NOT NULL)"); err != nil {
			return nil, "", err
		}
		value := make([]byte, recordSize)
		for i := range value {
			value[i] = byte('a' + i%26)
		}
		encode := func(buf []byte, from, to int) []byte {
			buf = append(buf, "PGCOPY\n\xff\r\n\x00"...)
			buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0) // flags, header extension length
			for i := from; i < to; i++ {
				buf = binary.BigEndian.AppendUint16(buf, 2)
				buf = binary.BigEndian.AppendUint32(buf, 8)
				buf = binary.BigEndian.AppendUint64(buf, uint64(i+1))
				buf = binary.BigEndian.AppendUint32(buf, uint32(len(value)))
				buf = append(buf, value...)
			}
			return append(buf, 0xff, 0xff)
		}
		return encode, "COPY raw_records (key, value) FROM STDIN (FORMAT binary)", nil
	})
}

// rawLoop runs a COPY loop in a scratch database: setup creates the table
// and returns the encoder of records [from, to) and the COPY statement. The
// scratch database has the store's schema (its migrations run), so a table
// can be created LIKE es_events. Encoding happens inside the timed loop, as
// the store's does.
func (t *PostgresTarget) rawLoop(ctx context.Context, kind string, records, batchSize, recordSize int,
	setup func(*pgx.Conn) (func(buf []byte, from, to int) []byte, string, error)) (_ float64, err error) {
	if records <= 0 || batchSize <= 0 || recordSize < 0 {
		return 0, fmt.Errorf("raw loop: %d records of %d bytes in transactions of %d", records, recordSize, batchSize)
	}
	dsn, drop, err := t.scratch(ctx, "raw")
	if err != nil {
		return 0, fmt.Errorf("raw loop: %w", err)
	}
	defer func() { err = errors.Join(err, drop()) }()
	if kind == "events" {
		s, err := postgres.Open(ctx, dsn, t.Options) // runs the migrations: es_events exists
		if err != nil {
			return 0, fmt.Errorf("raw loop: %w", err)
		}
		if err := s.Close(); err != nil {
			return 0, fmt.Errorf("raw loop: %w", err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("raw loop: %w", err)
	}
	defer conn.Close(context.Background())
	encode, copySQL, err := setup(conn)
	if err != nil {
		return 0, fmt.Errorf("raw loop (%s): %w", kind, err)
	}
	// Transactions of exactly batchSize records (the last may be smaller):
	// the store's average batch, rounded.
	var buf []byte
	start := time.Now()
	for from := 0; from < records; from += batchSize {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		buf = encode(buf[:0], from, min(from+batchSize, records))
		if err := rawTx(ctx, conn, buf, copySQL); err != nil {
			return 0, fmt.Errorf("raw loop (%s): %w", kind, err)
		}
	}
	return float64(records) / time.Since(start).Seconds(), nil
}

// rawTx commits one COPY of the binary stream buf.
func rawTx(ctx context.Context, conn *pgx.Conn, buf []byte, copySQL string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
		return err
	}
	if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf), copySQL); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
