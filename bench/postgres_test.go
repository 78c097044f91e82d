package bench

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// TestPostgresStore runs a tiny PostgreSQL measurement end to end: the store,
// the es_events-shaped raw loop and the key/value one all write, and every
// figure is filled in. It asserts nothing about speed.
func TestPostgresStore(t *testing.T) {
	admin := pgtest.AdminDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Store(ctx, StoreConfig{
		Target:      &PostgresTarget{AdminDSN: admin},
		Appenders:   []int{1, 8},
		Events:      300,
		MaxDuration: 2 * time.Second,
		ReadEvents:  300,
		Repeat:      1,
	})
	if err != nil {
		t.Fatalf("Store() = %v", err)
	}
	for _, k := range []string{"1", "8"} {
		if res.EventsPerSec[k] <= 0 || res.RawEventsPerSec[k] <= 0 || res.Ratio[k] <= 0 ||
			res.RawKVEventsPerSec[k] <= 0 || res.RatioKV[k] <= 0 || res.Events[k] <= 0 {
			t.Errorf("appenders %s: result %+v has an empty measurement", k, res)
		}
	}
	if res.Target != "postgres" || res.ReadEvents != 300 || res.ReadEventsPerSec <= 0 {
		t.Errorf("Store() = %+v", res)
	}

	// A count that is not a multiple of the batch: the last transaction is
	// smaller, and every row goes in (the unique keys would refuse a repeat).
	target := &PostgresTarget{AdminDSN: admin}
	for _, loop := range []func(context.Context, int, int, int) (float64, error){target.RawLoop, target.RawKVLoop} {
		if perSec, err := loop(ctx, 1234, 100, 200); err != nil || perSec <= 0 {
			t.Errorf("raw loop of 1234 records in transactions of 100 = %v, %v", perSec, err)
		}
	}
	if _, err := target.RawLoop(ctx, 0, 100, 200); err == nil {
		t.Error("RawLoop(0 records) succeeded, want an error naming the arguments")
	}
}
