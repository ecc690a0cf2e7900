package bench

import (
	"math"
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: every bucket spans at most
// 1/2^histSubBits of its lower bound, so a reported percentile is within
// 0.8% above the true one (HDR histograms call this two significant
// digits).
const histSubBits = 7

// histBuckets covers 0 to 2^40 ns (about 18 minutes) with that precision:
// a value at or past the top is counted in the last bucket.
const histBuckets = (40 - histSubBits + 1) << histSubBits

// Histogram is a log-linear latency histogram in the manner of HDR
// histograms: fixed memory (about 35 KiB), constant-time Record, and
// percentiles within 0.8% of the exact value. It is written here rather
// than imported because the bench needs only Record, Merge and Quantile,
// and a self-contained one makes the rounding rule (a quantile reports its
// bucket's upper bound, never more than Max) easy to state and test.
//
// The zero value is an empty histogram ready to use. It is not safe for
// concurrent use: each virtual user keeps its own and Run merges them.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      float64 // nanoseconds
	min, max time.Duration
}

// histIndex returns the bucket of a non-negative value in nanoseconds.
func histIndex(v uint64) int {
	if v < 1<<histSubBits {
		return int(v) // exact below 128 ns
	}
	e := bits.Len64(v) - 1 // 2^e <= v < 2^(e+1), e >= histSubBits
	shift := e - histSubBits
	i := (shift+1)<<histSubBits + int((v>>shift)&(1<<histSubBits-1))
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper returns the largest value that falls in bucket i.
func histUpper(i int) uint64 {
	if i < 1<<histSubBits {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	mant := uint64(i&(1<<histSubBits-1)) | 1<<histSubBits
	return (mant+1)<<shift - 1
}

// Record adds one observation. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest observation, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return h.max }

// Min returns the smallest observation, exactly; 0 when empty.
func (h *Histogram) Min() time.Duration { return h.min }

// Mean returns the mean observation; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the smallest value v such that at least a fraction q
// of the observations are at most v, rounded up to the upper bound of v's
// bucket (so within 0.8% above the exact value) and capped at Max. q is
// clamped to [0, 1]; Quantile(1) is Max and Quantile(0) is Min. It returns
// 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 || math.IsNaN(q) {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == histBuckets-1 {
				return h.max // the overflow bucket has no upper bound but Max
			}
			v := time.Duration(histUpper(i))
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return v
		}
	}
	return h.max
}

// CDF returns points (latency, fraction of observations at most that
// latency) at every non-empty bucket, for plotting a distribution.
func (h *Histogram) CDF() (lat []time.Duration, frac []float64) {
	if h.n == 0 {
		return nil, nil
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		v := time.Duration(histUpper(i))
		if v > h.max {
			v = h.max
		}
		lat = append(lat, v)
		frac = append(frac, float64(seen)/float64(h.n))
	}
	return lat, frac
}
