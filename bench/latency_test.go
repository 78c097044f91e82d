package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestLatenciesQuantilesMatchSortedSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 99, 1000, 100_000} {
		var l latencies
		samples := make([]time.Duration, n)
		for i := range samples {
			// Spread over 1 µs .. ~17 min, log-uniformly.
			samples[i] = time.Duration(1<<r.IntN(30)+r.IntN(1<<20)) * time.Microsecond
			l.add(samples[i])
		}
		slices.Sort(samples)
		for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999} {
			want := samples[int(q*float64(n))]
			got := l.quantile(q)
			if diff := got - want; diff < -want/200-time.Microsecond || diff > want/200+time.Microsecond {
				t.Errorf("n=%d q=%v: got %v, want %v within 0.5%%", n, q, got, want)
			}
		}
	}
}

func TestLatencyBucketsAreMonotonicAndRoundTrip(t *testing.T) {
	prev := -1
	for us := int64(0); us < 1<<22; us += 1 + us/1000 {
		d := time.Duration(us) * time.Microsecond
		b := latBucket(d)
		if b < prev {
			t.Fatalf("bucket of %v is %d, below the bucket of a shorter duration (%d)", d, b, prev)
		}
		prev = b
		if v := latValue(b); v-d > d/128+time.Microsecond || d-v > d/128+time.Microsecond {
			t.Fatalf("%v falls in bucket %d whose midpoint is %v", d, b, v)
		}
	}
	if b := latBucket(100 * 365 * 24 * time.Hour); b != latBuckets-1 {
		t.Errorf("a huge duration's bucket is %d, want the last (%d)", b, latBuckets-1)
	}
	var empty latencies
	if q := empty.quantile(0.5); q != 0 {
		t.Errorf("quantile without samples = %v, want 0", q)
	}
}
