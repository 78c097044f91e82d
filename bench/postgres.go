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

	"github.com/hodei-jobs/hodei/eventstore/postgres"
)

// PostgresTarget measures the PostgreSQL event store (eventstore/postgres).
// Each Open and RawLoop works in a scratch database it creates through
// AdminDSN and drops when done, so the server needs no preparation; the role
// needs CREATEDB, and for the store's migrations the rights to create roles
// (the cluster's superuser, as .ci/postgres.sh gives).
//
// The raw loop is a plain table of (key bigint PRIMARY KEY, value bytea),
// the engine's equivalent of the keyed bucket the bolt raw loop fills,
// loaded with binary COPY in transactions of the batch size with
// synchronous_commit on, as the store commits.
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

// RawLoop implements Target. The records are spread over transactions as
// evenly as possible, so the average transaction holds batchSize records.
func (t *PostgresTarget) RawLoop(ctx context.Context, records, batchSize, recordSize int) (_ float64, err error) {
	if records <= 0 || batchSize <= 0 || recordSize < 0 {
		return 0, fmt.Errorf("raw loop: %d records of %d bytes in transactions of %d", records, recordSize, batchSize)
	}
	dsn, drop, err := t.scratch(ctx, "raw")
	if err != nil {
		return 0, fmt.Errorf("raw loop: %w", err)
	}
	defer func() { err = errors.Join(err, drop()) }()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("raw loop: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE raw_records (key bigint PRIMARY KEY, value bytea NOT NULL)"); err != nil {
		return 0, fmt.Errorf("raw loop: %w", err)
	}
	value := make([]byte, recordSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	txs := max((records+batchSize/2)/batchSize, 1)
	var buf []byte
	start := time.Now()
	written := 0
	for i := 0; i < txs; i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		end := records * (i + 1) / txs
		buf = append(buf[:0], "PGCOPY\n\xff\r\n\x00"...)
		buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0) // flags, header extension length
		for ; written < end; written++ {
			buf = binary.BigEndian.AppendUint16(buf, 2)
			buf = binary.BigEndian.AppendUint32(buf, 8)
			buf = binary.BigEndian.AppendUint64(buf, uint64(written+1))
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(value)))
			buf = append(buf, value...)
		}
		buf = append(buf, 0xff, 0xff)
		if err := rawTx(ctx, conn, buf); err != nil {
			return 0, fmt.Errorf("raw loop: %w", err)
		}
	}
	return float64(records) / time.Since(start).Seconds(), nil
}

// rawTx commits one COPY of the binary stream buf.
func rawTx(ctx context.Context, conn *pgx.Conn, buf []byte) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
		return err
	}
	if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf), "COPY raw_records (key, value) FROM STDIN (FORMAT binary)"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
