package bench

import (
	"math/bits"
	"time"
)

// latencies is a histogram of durations with a fixed footprint (about 33
// KB), whatever the number of samples: the load harnesses share their
// process, and so its peak RSS, with the server they measure, so they must
// not keep a sample per job. Durations are kept in microseconds, exactly
// below 128 µs and in buckets 1/128 wide above (a relative error under
// 0.4%, the bucket's midpoint is reported), up to about 2^40 µs (12 days);
// longer ones count in the last bucket.
type latencies struct {
	counts [latBuckets]uint32
	n      uint64
}

const (
	latSub     = 128 // buckets per power of two, and the exact range
	latBuckets = latSub + 34*latSub
)

func latBucket(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < latSub {
		return int(us)
	}
	e := bits.Len64(us) - 8 // us>>e is in [128, 255]
	return min(latSub+e*latSub+int(us>>e)-latSub, latBuckets-1)
}

// latValue is the midpoint of bucket i.
func latValue(i int) time.Duration {
	if i < latSub {
		return time.Duration(i) * time.Microsecond
	}
	e := (i - latSub) / latSub
	m := uint64(i-latSub-e*latSub) + latSub
	return time.Duration(m<<e+(uint64(1)<<e)/2) * time.Microsecond
}

func (l *latencies) add(d time.Duration) {
	l.counts[latBucket(d)]++
	l.n++
}

// quantile returns the q-quantile (0 <= q < 1) as the sample of rank
// floor(q*n) in sorted order would be, to the bucket; 0 without samples.
func (l *latencies) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := uint64(q * float64(l.n))
	var seen uint64
	for i, c := range l.counts {
		seen += uint64(c)
		if seen > rank {
			return latValue(i)
		}
	}
	return latValue(latBuckets - 1)
}
