package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrBadFault is returned (wrapped) by ParseFault for a fault that does
// not parse.
var ErrBadFault = errors.New("bench: bad fault")

// FaultKind names what a fault does.
type FaultKind string

// The faults a run can inject.
const (
	// FaultKill crashes one node with SIGKILL.
	FaultKill FaultKind = "kill"
	// FaultRestart restarts one node: gracefully when it runs, a plain
	// start when it was killed.
	FaultRestart FaultKind = "restart"
	// FaultRollingRestart restarts every node in turn, as a deploy does.
	FaultRollingRestart FaultKind = "rolling-restart"
	// FaultAddNode starts one more node and puts it behind the balancer.
	FaultAddNode FaultKind = "add-node"
	// FaultKillStore crashes the external store server (its primary).
	FaultKillStore FaultKind = "kill-store"
	// FaultRestoreStore starts it again; a run schedules it
	// Options.StoreDowntime after a FaultKillStore.
	FaultRestoreStore FaultKind = "restore-store"
)

func (k FaultKind) takesNode() bool { return k == FaultKill || k == FaultRestart }

// Fault is one fault on a run's schedule.
type Fault struct {
	Kind FaultKind
	// Node is the node a kill or restart hits (n1, n2, …).
	Node string
	// At is when the fault happens, measured from the start of the load;
	// used when Frac is 0.
	At time.Duration
	// Frac, when above 0, places the fault at that fraction of the
	// load's duration instead (0.5: halfway).
	Frac float64
}

// When returns when f happens in a load lasting d.
func (f Fault) When(d time.Duration) time.Duration {
	if f.Frac > 0 {
		return time.Duration(f.Frac * float64(d))
	}
	return f.At
}

// String returns the fault as the command line writes it: "kill n2@10s",
// "rolling-restart@50%".
func (f Fault) String() string {
	at := f.At.String()
	if f.Frac > 0 {
		at = strconv.FormatFloat(f.Frac*100, 'f', -1, 64) + "%"
	}
	if f.Kind.takesNode() {
		return string(f.Kind) + " " + f.Node + "@" + at
	}
	return string(f.Kind) + "@" + at
}

// ParseFault parses the value of a fault flag. Kill and restart take
// "ID@T" or just "ID" (halfway through the load); the others take "T".
// T is a duration from the start of the load ("10s") or a percentage of
// its duration ("50%"). It fails with an error wrapping ErrBadFault.
func ParseFault(kind FaultKind, spec string) (Fault, error) {
	f := Fault{Kind: kind}
	at := spec
	if kind.takesNode() {
		var ok bool
		f.Node, at, ok = strings.Cut(spec, "@")
		if !ok {
			at = "50%"
		}
		if f.Node == "" {
			return Fault{}, fmt.Errorf("%w: %s %q: want NODE@TIME, like n2@10s", ErrBadFault, kind, spec)
		}
	} else {
		at = strings.TrimPrefix(at, "@")
	}
	if pct, ok := strings.CutSuffix(at, "%"); ok {
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil || v <= 0 || v >= 100 {
			return Fault{}, fmt.Errorf("%w: %s %q: a percentage of the duration must be between 0 and 100", ErrBadFault, kind, spec)
		}
		f.Frac = v / 100
		return f, nil
	}
	d, err := time.ParseDuration(at)
	if err != nil || d < 0 {
		return Fault{}, fmt.Errorf("%w: %s %q: want a time like 10s or 50%%", ErrBadFault, kind, spec)
	}
	f.At = d
	return f, nil
}

// FaultEvent is what happened when a fault ran.
type FaultEvent struct {
	Fault string `json:"fault"`
	// AtS and DoneS are when it started and finished, in seconds since
	// the load began.
	AtS   float64 `json:"at_s"`
	DoneS float64 `json:"done_s"`
	Error string  `json:"error,omitempty"`
}

// schedule returns the faults in the order they happen, with a restore
// after each store kill when downtime is positive.
func schedule(faults []Fault, d, downtime time.Duration) []Fault {
	var out []Fault
	for _, f := range faults {
		out = append(out, f)
		if f.Kind == FaultKillStore && downtime > 0 {
			out = append(out, Fault{Kind: FaultRestoreStore, At: f.When(d) + downtime})
		}
	}
	slices.SortStableFunc(out, func(a, b Fault) int { return cmp.Compare(a.When(d), b.When(d)) })
	return out
}

// runFaults applies the schedule to cl, one fault after the other, each
// at its time from start (a fault that takes long, like a rolling
// restart, delays the ones after it). It returns when all ran or ctx
// ended; a fault cut short by ctx is recorded with ctx's error.
func runFaults(ctx context.Context, cl Cluster, faults []Fault, start time.Time, d time.Duration, record func(FaultEvent)) {
	for _, f := range faults {
		wait := time.Until(start.Add(f.When(d)))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		ev := FaultEvent{Fault: f.String(), AtS: time.Since(start).Seconds()}
		err := applyFault(ctx, cl, f)
		ev.DoneS = time.Since(start).Seconds()
		if err != nil {
			ev.Error = err.Error()
		}
		record(ev)
	}
}

func applyFault(ctx context.Context, cl Cluster, f Fault) error {
	switch f.Kind {
	case FaultKill:
		return cl.Kill(f.Node)
	case FaultRestart:
		return cl.Restart(ctx, f.Node)
	case FaultRollingRestart:
		return cl.RollingRestart(ctx)
	case FaultAddNode:
		_, err := cl.Add(ctx)
		return err
	case FaultKillStore:
		return cl.KillStore(ctx)
	case FaultRestoreStore:
		return cl.RestoreStore(ctx)
	}
	return fmt.Errorf("%w: unknown kind %q", ErrBadFault, f.Kind)
}
