package pgmigrate

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationsNamesAndOrder(t *testing.T) {
	ok := Set{Files: fstest.MapFS{
		"m/0002_two.sql": {Data: []byte("SELECT 2")},
		"m/0001_one.sql": {Data: []byte("SELECT 1")},
	}, Dir: "m"}
	ms, err := ok.Migrations()
	if err != nil || len(ms) != 2 || ms[0].Name != "0001_one.sql" || ms[1].Version != 2 || ms[1].SQL != "SELECT 2" {
		t.Fatalf("Migrations() = %+v, %v", ms, err)
	}
	if ok.Version() != 2 {
		t.Fatalf("Version() = %d, want 2", ok.Version())
	}
	for name, files := range map[string]fstest.MapFS{
		"gap":      {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"no name":  {"m/0001.sql": {}},
		"not sql":  {"m/0001_a.txt": {}},
		"zero":     {"m/0000_a.sql": {}},
		"not num":  {"m/first_a.sql": {}},
		"repeated": {"m/0001_a.sql": {}, "m/01_b.sql": {}},
	} {
		s := Set{Files: files, Dir: "m"}
		if _, err := s.Migrations(); err == nil || !strings.Contains(err.Error(), "migration") {
			t.Errorf("%s: Migrations() = %v, want an error naming the migration", name, err)
		}
		if s.Version() != 0 {
			t.Errorf("%s: Version() = %d, want 0", name, s.Version())
		}
	}
}
