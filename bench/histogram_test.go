package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinPrecision(t *testing.T) {
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	var vals []time.Duration
	for range 20000 {
		// Log-uniform from 1µs to 1s: every bucket range is exercised.
		d := time.Duration(float64(time.Microsecond) * math.Pow(10, rng.Float64()*6))
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals))+0.999999)-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/(1<<histSubBits)) {
			t.Errorf("Quantile(%v) = %v, exact %v: want within [exact, exact·(1+1/128)]", q, got, exact)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] || h.Max() != vals[len(vals)-1] {
		t.Errorf("Quantile(1) = %v, Max = %v; want the exact max %v", h.Quantile(1), h.Max(), vals[len(vals)-1])
	}
	if h.Quantile(0) != vals[0] || h.Min() != vals[0] {
		t.Errorf("Quantile(0) = %v, Min = %v; want the exact min %v", h.Quantile(0), h.Min(), vals[0])
	}
	if h.Count() != 20000 {
		t.Errorf("Count = %d, want 20000", h.Count())
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for v := range 100 {
		h.Record(time.Duration(v))
	}
	if got := h.Quantile(0.5); got != 49 {
		t.Errorf("median of 0…99 ns = %v, want 49ns", got)
	}
	if got := h.Mean(); got != 49 { // 49.5 truncated
		t.Errorf("mean = %v, want 49ns", got)
	}
}

func TestHistogramMergeAndEdges(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i+1) * 37 * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	a.Merge(&Histogram{}) // merging nothing changes nothing
	for _, q := range []float64{0, 0.25, 0.5, 0.99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%v) = %v, recorded together %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Mean() != all.Mean() {
		t.Errorf("merged count, mean = %d, %v; want %d, %v", a.Count(), a.Mean(), all.Count(), all.Mean())
	}

	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 || empty.Max() != 0 {
		t.Error("an empty histogram must report zeros")
	}
	if lat, frac := empty.CDF(); lat != nil || frac != nil {
		t.Error("an empty histogram has no CDF")
	}

	var h Histogram
	h.Record(-time.Second)   // counts as 0
	h.Record(40 * time.Hour) // past the top: the last bucket, exact max
	if h.Min() != 0 || h.Max() != 40*time.Hour || h.Quantile(0.99) != 40*time.Hour {
		t.Errorf("min %v, max %v, p99 %v; want 0, 40h, 40h", h.Min(), h.Max(), h.Quantile(0.99))
	}
	lat, frac := h.CDF()
	if len(lat) != 2 || frac[len(frac)-1] != 1 {
		t.Errorf("CDF = %v %v, want two points ending at 1", lat, frac)
	}
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	// Every value falls in the bucket whose upper bound is the first at or
	// above it: no gaps, no overlaps.
	for i := 1; i < histBuckets-1; i++ {
		lo := histUpper(i-1) + 1
		if histIndex(lo) != i || histIndex(histUpper(i)) != i {
			t.Fatalf("bucket %d spans [%d, %d] but index(%d) = %d, index(%d) = %d",
				i, lo, histUpper(i), lo, histIndex(lo), histUpper(i), histIndex(histUpper(i)))
		}
	}
}
