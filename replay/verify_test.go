package replay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/replay"
)

// tampered serves a copy of a log with one change applied.
type tampered struct{ log []eventstore.Envelope }

func (t tampered) ReadAll(_ context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	var out []eventstore.Envelope
	for _, e := range t.log {
		if e.Position >= from && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func sampleLog(t *testing.T) []eventstore.Envelope {
	t.Helper()
	s := memory.New(memory.Options{})
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		ev := eventstoretest.Event("test.happened", 30)
		if _, err := s.Append(ctx, fmt.Sprintf("job-%d", i%4), eventstore.Any, []eventstore.EventData{ev}); err != nil {
			t.Fatal(err)
		}
	}
	log, err := s.ReadAll(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func TestVerifyIntact(t *testing.T) {
	log := sampleLog(t)
	rep, err := replay.Verify(context.Background(), tampered{log}, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("Verify() = %+v, %v; want OK", rep, err)
	}
	if rep.Events != 40 || rep.Streams != 4 || rep.Head.Hash != log[39].Hash {
		t.Fatalf("Verify() = %+v, want 40 events, 4 streams, head %s", rep, log[39].Hash)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	cases := []struct {
		name   string
		mutate func([]eventstore.Envelope) []eventstore.Envelope
		at     uint64
		reason string
	}{
		{"flip a payload byte", func(l []eventstore.Envelope) []eventstore.Envelope {
			l[16].Payload = append([]byte(nil), l[16].Payload...)
			l[16].Payload[3] ^= 0x20
			return l
		}, 17, "hash"},
		{"delete an event", func(l []eventstore.Envelope) []eventstore.Envelope {
			return append(l[:9:9], l[10:]...)
		}, 10, "missing"},
		{"swap two events", func(l []eventstore.Envelope) []eventstore.Envelope {
			l[20], l[25] = l[25], l[20]
			return l
		}, 21, "missing"},
		{"change a stream version", func(l []eventstore.Envelope) []eventstore.Envelope {
			l[30].StreamVersion++
			return l
		}, 31, "hash"},
		{"rewrite a version and rehash the rest", func(l []eventstore.Envelope) []eventstore.Envelope {
			l[30].StreamVersion++
			for i := 30; i < len(l); i++ {
				l[i].PrevHash = l[i-1].Hash
				l[i].Hash = eventstore.ChainHash(&l[i])
			}
			return l
		}, 31, "contiguous"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := c.mutate(sampleLog(t))
			rep, err := replay.Verify(context.Background(), tampered{log}, nil)
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if rep.OK() || rep.Problem.Position != c.at || !strings.Contains(rep.Problem.Reason, c.reason) {
				t.Fatalf("Verify() problem = %v, want one at position %d about %q", rep.Problem, c.at, c.reason)
			}
		})
	}
}
