package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// FaultKind names what a fault does.
type FaultKind string

// The faults a schedule draws from.
const (
	// FaultKill crashes a node with SIGKILL and starts it again after
	// Hold, as a supervisor would.
	FaultKill FaultKind = "kill"
	// FaultFreeze stops a node with SIGSTOP for Hold, then SIGCONT: a
	// long garbage-collection pause, a VM migration, a stuck disk.
	FaultFreeze FaultKind = "freeze"
	// FaultIsolate cuts a node off from its peers and from the balancer
	// for Hold while its process runs on: its host's network is gone.
	FaultIsolate FaultKind = "isolate"
	// FaultPartition cuts a node off from its peers only; the balancer
	// still reaches every node, so both sides keep serving (a split
	// brain). Only the owner policy, which sends each session to one node,
	// can keep every write through it.
	FaultPartition FaultKind = "partition"
	// FaultStoreKill crashes the external store's primary; the fault
	// lasts until the store has failed over and the old primary is back
	// as a replica.
	FaultStoreKill FaultKind = "store-kill"
	// FaultStoreFreeze stops the external store's primary with SIGSTOP
	// for Hold: shorter than the failover delay it is a hang, longer it
	// is a failover with a stale primary that wakes up afterwards.
	FaultStoreFreeze FaultKind = "store-freeze"
)

// takesNode reports whether the fault hits one node.
func (k FaultKind) takesNode() bool {
	return k == FaultKill || k == FaultFreeze || k == FaultIsolate || k == FaultPartition
}

// needsIsolation reports whether the fault needs nodes on hosts of their
// own.
func (k FaultKind) needsIsolation() bool { return k == FaultIsolate || k == FaultPartition }

// holdRange is how long each kind of fault lasts, drawn uniformly.
var holdRange = map[FaultKind][2]time.Duration{
	FaultKill:        {500 * time.Millisecond, 4 * time.Second},
	FaultFreeze:      {300 * time.Millisecond, 5 * time.Second},
	FaultIsolate:     {2 * time.Second, 6 * time.Second},
	FaultPartition:   {2 * time.Second, 6 * time.Second},
	FaultStoreKill:   {0, 0},
	FaultStoreFreeze: {300 * time.Millisecond, 3 * time.Second},
}

// Fault is one fault of a schedule.
type Fault struct {
	Kind FaultKind
	// Node is the node a node fault hits.
	Node string
	// Hold is how long the fault lasts before it is undone.
	Hold time.Duration
	// Pause is the quiet time after the cluster has recovered from the
	// fault, before the next one.
	Pause time.Duration
}

// String returns the fault as "kill n2 for 1.2s".
func (f Fault) String() string {
	s := string(f.Kind)
	if f.Node != "" {
		s += " " + f.Node
	}
	if f.Hold > 0 {
		s += " for " + f.Hold.Round(10*time.Millisecond).String()
	}
	return s
}

// Schedule returns faults drawn from kinds, one after the other: every
// kind once, in a random order, then more until the holds and pauses add
// up to about total. The same
// seed, kinds, nodes and total give the same schedule, which is what
// makes a failed run replayable. Node faults hit nodes drawn from nodes.
func Schedule(seed uint64, kinds []FaultKind, nodes []string, total time.Duration) []Fault {
	if len(kinds) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var out []Fault
	var used time.Duration
	for len(out) < len(kinds) || used < total {
		// Every kind once, in a random order, before any repeats: a short
		// run still meets each fault.
		round := slices.Clone(kinds)
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		for _, k := range round {
			f := Fault{Kind: k}
			if k.takesNode() && len(nodes) > 0 {
				f.Node = nodes[rng.IntN(len(nodes))]
			}
			r := holdRange[k]
			f.Hold = between(r[0], r[1])
			f.Pause = between(500*time.Millisecond, 2*time.Second)
			out = append(out, f)
			used += f.Hold + f.Pause
			if used >= total && len(out) >= len(kinds) {
				break
			}
		}
	}
	return out
}

// StoreFaults crashes and freezes an external store. The chaos tests
// implement it over internal/testserver's servers.
type StoreFaults interface {
	// Kill crashes the store's primary and returns once the store serves
	// again and the crashed server is back as a replica.
	Kill(ctx context.Context) error
	// Freeze stops the primary with SIGSTOP; Thaw resumes it.
	Freeze() error
	Thaw() error
}

// ErrFaultUnsupported is returned (wrapped) by Inject for a fault this
// cluster cannot take: a partition without isolated nodes, a store fault
// without a store.
var ErrFaultUnsupported = errors.New("chaos: fault not supported here")

// Inject applies f, holds it for f.Hold, undoes it (restarting a killed
// node, thawing, healing), and returns once every node is ready again (see
// WaitReady); the undoing and the wait for readiness end within after
// the fault began. It returns the first error: a fault that could not be
// applied or undone, or a cluster that did not recover in time. store may
// be nil for strategies without an external store.
func (c *Cluster) Inject(ctx context.Context, f Fault, store StoreFaults, within time.Duration) error {
	if f.Kind.needsIsolation() && !c.Isolated() {
		return fmt.Errorf("%w: %s needs isolated nodes", ErrFaultUnsupported, f.Kind)
	}
	if (f.Kind == FaultStoreKill || f.Kind == FaultStoreFreeze) && store == nil {
		return fmt.Errorf("%w: %s without a store", ErrFaultUnsupported, f.Kind)
	}
	hold := func() error {
		t := time.NewTimer(f.Hold)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	rctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var err error
	switch f.Kind {
	case FaultKill:
		if err = c.Kill(f.Node); err == nil {
			err = errors.Join(hold(), c.Revive(rctx, f.Node))
		}
	case FaultFreeze:
		if err = c.Freeze(f.Node); err == nil {
			err = errors.Join(hold(), c.Thaw(f.Node))
		}
	case FaultIsolate, FaultPartition:
		if err = c.Partition(ctx, []string{f.Node}, f.Kind == FaultIsolate); err == nil {
			err = hold()
		}
		err = errors.Join(err, c.Heal(context.WithoutCancel(ctx)))
	case FaultStoreKill:
		err = store.Kill(rctx)
	case FaultStoreFreeze:
		if err = store.Freeze(); err == nil {
			err = errors.Join(hold(), store.Thaw())
		}
	default:
		return fmt.Errorf("%w: unknown fault %q", ErrFaultUnsupported, f.Kind)
	}
	if err != nil {
		return fmt.Errorf("chaos: %s: %w", f, err)
	}
	if err := c.WaitReady(rctx); err != nil {
		return fmt.Errorf("chaos: after %s: %w", f, err)
	}
	return nil
}
