package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
)

// changes are the statements that would rewrite history.
var changes = []string{
	"UPDATE es_events SET actor = 'user:mallory' WHERE global_position = 1",
	"UPDATE es_events SET payload = '\\x00'",
	"DELETE FROM es_events WHERE global_position = 2",
	"DELETE FROM es_events",
	"TRUNCATE es_events",
	"TRUNCATE es_events CASCADE",
}

func TestImmutability(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn, postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	evs := []eventstore.EventData{newEvent(1), newEvent(2), newEvent(3)}
	if _, err := s.Append(ctx, "job-1", eventstore.NoStream, evs); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	before, err := s.ReadAll(ctx, 1, 100)
	if err != nil {
		t.Fatalf("ReadAll() = %v", err)
	}

	t.Run("runtime role may not change events", func(t *testing.T) {
		c := pgtest.Conn(t, dsn)
		if _, err := c.Exec(ctx, "SET ROLE "+postgres.DefaultRole); err != nil {
			t.Fatal(err)
		}
		stmts := append(append([]string(nil), changes...),
			"ALTER TABLE es_events DISABLE TRIGGER es_events_no_update_delete",
			"DROP TRIGGER es_events_no_truncate ON es_events",
			"DROP TABLE es_events",
		)
		for _, q := range stmts {
			_, err := c.Exec(ctx, q)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || (pe.Code != "42501" && pe.Code != "42P01") {
				t.Errorf("as %s: %s = %v, want permission denied", postgres.DefaultRole, q, err)
			}
		}
		// SELECT and INSERT are what it has on the events.
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM es_events").Scan(&n); err != nil || n != 3 {
			t.Errorf("as %s: SELECT count(*) = %d, %v; want 3, nil", postgres.DefaultRole, n, err)
		}
	})

	t.Run("triggers fire for a superuser in replica mode", func(t *testing.T) {
		c := pgtest.Conn(t, dsn)
		var super bool
		if err := c.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
			t.Skipf("the test DSN is not a superuser (%v): cannot test session_replication_role", err)
		}
		if _, err := c.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			t.Fatal(err)
		}
		for _, q := range changes {
			_, err := c.Exec(ctx, q)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || !strings.Contains(pe.Message, "append-only") {
				t.Errorf("superuser, replica mode: %s = %v, want the append-only trigger's error", q, err)
			}
		}
		var states []string
		rows, err := c.Query(ctx, `SELECT tgname || '=' || tgenabled::text FROM pg_trigger
			WHERE tgrelid = 'es_events'::regclass AND NOT tgisinternal ORDER BY tgname`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var st string
			if err := rows.Scan(&st); err != nil {
				t.Fatal(err)
			}
			states = append(states, st)
		}
		want := "es_events_no_truncate=A,es_events_no_update_delete=A"
		if got := strings.Join(states, ","); got != want {
			t.Errorf("triggers = %s, want %s (A = ENABLE ALWAYS)", got, want)
		}
	})

	t.Run("runtime role owns nothing and has only its grants", func(t *testing.T) {
		c := pgtest.Conn(t, dsn)
		var owned int
		err := c.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM pg_class WHERE relowner = $1::regrole) +
			(SELECT count(*) FROM pg_proc WHERE proowner = $1::regrole) +
			(SELECT count(*) FROM pg_type WHERE typowner = $1::regrole) +
			(SELECT count(*) FROM pg_namespace WHERE nspowner = $1::regrole) +
			(SELECT count(*) FROM pg_database WHERE datdba = $1::regrole)`, postgres.DefaultRole).Scan(&owned)
		if err != nil || owned != 0 {
			t.Errorf("%s owns %d objects (%v), want none", postgres.DefaultRole, owned, err)
		}
		var member bool
		if err := c.QueryRow(ctx, "SELECT pg_has_role($1, 'hodei_owner', 'MEMBER')", postgres.DefaultRole).Scan(&member); err != nil || member {
			t.Errorf("%s is a member of hodei_owner: %v, %v; want false", postgres.DefaultRole, member, err)
		}
		privs := map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": false, "DELETE": false, "TRUNCATE": false,
			"REFERENCES": false, "TRIGGER": false}
		for p, want := range privs {
			var has bool
			if err := c.QueryRow(ctx, "SELECT has_table_privilege($1, 'es_events', $2)", postgres.DefaultRole, p).Scan(&has); err != nil || has != want {
				t.Errorf("has_table_privilege(%s, es_events, %s) = %v, %v; want %v", postgres.DefaultRole, p, has, err, want)
			}
		}
		var owner string
		if err := c.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'es_events'").Scan(&owner); err != nil || owner != "hodei_owner" {
			t.Errorf("es_events owner = %q, %v; want hodei_owner", owner, err)
		}
	})

	after, err := s.ReadAll(ctx, 1, 100)
	if err != nil {
		t.Fatalf("ReadAll() = %v", err)
	}
	if len(after) != len(before) {
		t.Fatalf("log holds %d events after the attempts, want %d", len(after), len(before))
	}
	for i := range after {
		if string(eventstore.MarshalEnvelope(nil, &after[i])) != string(eventstore.MarshalEnvelope(nil, &before[i])) {
			t.Fatalf("position %d changed", after[i].Position)
		}
	}
	// The store still appends after all that.
	if res, err := s.Append(ctx, "job-1", eventstore.Exact(3), []eventstore.EventData{newEvent(4)}); err != nil || res.FirstPosition != 4 {
		t.Fatalf("Append() after the attempts = %+v, %v; want position 4", res, err)
	}
}

// newEvent returns a small event whose id is derived from n.
func newEvent(n int) eventstore.EventData {
	var id eventstore.ID
	copy(id[:], []byte("test-event-id-00"))
	id[14], id[15] = byte(n>>8), byte(n)
	return eventstore.EventData{ID: id, Type: "test.happened", SchemaVersion: 1, Actor: "system:test",
		Payload: []byte{0x81, 0xa1, 'n', byte(n & 0x7f)}}
}
