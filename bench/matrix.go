package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/roamsession/roam/internal/launch"
)

// MatrixOptions configures Matrix.
type MatrixOptions struct {
	// Options is the workload and fault schedule every run shares; its
	// Strategy and Nodes are ignored.
	Options
	// Strategies are run in this order; when empty, every strategy
	// internal/launch knows, in its order: the problem, the balancer's
	// remedies, the cluster's, then the external stores.
	Strategies []string
	// NodeCounts are the cluster sizes, each run with every strategy;
	// {DefaultNodes} when empty.
	NodeCounts []int
	// OnResult, when set, is called after each run, failed ones included.
	OnResult func(i, total int, r *Result)
	// OnStart, when set, is called before each run.
	OnStart func(i, total int, strategy string, nodes int)
}

// Matrix runs every strategy at every node count under the same workload
// and fault schedule, one after the other, and returns the results in
// that order (node count first). A run that cannot be made (a store
// server that is not installed, a node that does not start) is returned
// with Result.Error set and does not stop the others. Matrix fails only
// with an error wrapping ErrOptions, or ctx's error (with the results so
// far) when ctx ends.
func Matrix(ctx context.Context, mo MatrixOptions) ([]*Result, error) {
	strategies := mo.Strategies
	if len(strategies) == 0 {
		strategies = launch.StrategyNames()
	}
	counts := mo.NodeCounts
	if len(counts) == 0 {
		counts = []int{DefaultNodes}
	}
	check := mo.Options
	check.Strategy, check.Nodes = strategies[0], counts[0]
	if err := check.provision(); err != nil {
		return nil, err
	}
	total := len(strategies) * len(counts)
	var out []*Result
	for _, n := range counts {
		for _, s := range strategies {
			i := len(out)
			if mo.OnStart != nil {
				mo.OnStart(i, total, s, n)
			}
			opts := mo.Options
			opts.Strategy, opts.Nodes = s, n
			if opts.Seed == 0 {
				// The same users make the same choices in every run.
				opts.Seed = check.Seed
			}
			r, err := Run(ctx, opts)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			if err != nil {
				r = &Result{Strategy: s, Nodes: n, Users: check.Users, DurationS: check.Duration.Seconds(), Error: err.Error()}
			}
			out = append(out, r)
			if mo.OnResult != nil {
				mo.OnResult(i, total, r)
			}
		}
	}
	return out, nil
}

// ParseNodeCounts parses a list of cluster sizes: "3", "3,5" or "2-6", and
// mixes such as "2-4,8", in order and without repeats. It fails with an
// error wrapping ErrOptions for a count below 1, a reversed range, or
// anything that is not a number.
func ParseNodeCounts(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 1 {
			return nil, fmt.Errorf("%w: node count %q", ErrOptions, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%w: node range %q", ErrOptions, part)
			}
		}
		for n := a; n <= b; n++ {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no node count in %q", ErrOptions, s)
	}
	return out, nil
}
