package bench

import (
	"context"
	"errors"
)

// ErrNoStore is returned (wrapped) by Cluster.KillStore when the strategy
// keeps its sessions in the nodes or the cluster, so there is no store
// server to kill, or the launcher cannot reach the one there is.
var ErrNoStore = errors.New("bench: no store server to kill")

// Node is one app node of a running cluster as the bench sees it.
type Node struct {
	ID string
	// URL is the node's own base URL (its /metrics are there).
	URL string
	// PID of the node's current (or last) process, 0 when unknown.
	PID int
	// Alive is false once the node was killed or stopped and not
	// started again.
	Alive bool
}

// Cluster is what a run needs from a running set of nodes behind a
// balancer: where to send the users, where each node is, and the faults
// to inject. Its methods must be safe for concurrent use; Run calls the
// fault methods from one goroutine and Nodes from others.
type Cluster interface {
	// URL is the balancer's base URL, where the virtual users go.
	URL() string
	// Nodes lists every node the cluster has had, n1 first, including
	// killed ones.
	Nodes() []Node
	// Kill crashes the node with SIGKILL and returns once it is gone.
	Kill(id string) error
	// Restart stops the node gracefully when it runs (or finds it killed)
	// and starts it again with the same id and address; it returns once
	// the node is ready and the balancer sends it traffic again.
	Restart(ctx context.Context, id string) error
	// RollingRestart restarts every live node, one after the other, the
	// way a deploy does: each is taken out of the balancer first, and the
	// next waits until the previous is serving again.
	RollingRestart(ctx context.Context) error
	// Add starts one more node and puts it behind the balancer.
	Add(ctx context.Context) (Node, error)
	// KillStore crashes the external store server (for a replicated
	// store, its primary) with SIGKILL. It fails with an error wrapping
	// ErrNoStore when there is none. The store is not brought back: a
	// replicated store fails over by itself; a single one stays down for
	// RestoreStore.
	KillStore(ctx context.Context) error
	// RestoreStore starts a store KillStore crashed again, on the same
	// address, the way a supervisor would: what it holds afterwards is
	// what it persisted (for a memory-only Redis or memcached: nothing).
	// It is a no-op for a replicated store that failed over.
	RestoreStore(ctx context.Context) error
	// Stop stops the balancer, every node and any store server, and
	// returns once all of them are gone. It is safe to call more than
	// once.
	Stop(ctx context.Context) error
}

// Setup is what a Launcher starts.
type Setup struct {
	// Strategy names the strategy (none, sticky, ip-hash, all, backup,
	// redis, …).
	Strategy string
	// Nodes is how many app nodes to start.
	Nodes int
}

// A Launcher starts clusters for runs. Launch returns once every node is
// ready and the balancer serves; on failure it has stopped whatever it
// started.
type Launcher interface {
	Launch(ctx context.Context, s Setup) (Cluster, error)
}
