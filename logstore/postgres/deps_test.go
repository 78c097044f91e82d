package postgres_test

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The adapter depends on the logstore port, pgx and the shared PostgreSQL
// helpers (migrations, the LISTEN loop), never on the event store or any
// other part of Hodei: the two share a database and those helpers.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	deptest.Check(t, deptest.Module+"logstore/postgres", func(dep string) bool {
		return !strings.HasPrefix(dep, deptest.Module) || dep == deptest.Module+"logstore" ||
			dep == deptest.Module+"internal/pgmigrate" || dep == deptest.Module+"internal/pglisten"
	})
	deptest.Check(t, deptest.Module+"logstore/logstoretest", func(dep string) bool {
		return dep == deptest.Module+"logstore"
	})
}
