package testbin

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// NodeReadyLine is the pattern of the line `roam node` prints on stdout
// once it serves; its submatches are the id, the base URL and the store
// kind. It mirrors the Fprintf in cmd/roam/node.go.
const NodeReadyLine = `^roam node (\S+) listening on (http://\S+) store=(\S+)$`

// DefaultReadyTimeout is how long StartNode waits for the ready line when
// NodeOptions.ReadyTimeout is zero: a cluster node that joins a busy
// machine's cluster takes a few seconds.
const DefaultReadyTimeout = 30 * time.Second

// outputTail is how much of a node's output a failed test logs.
const outputTail = 6000

// NodeOptions says how StartNode runs `roam node`. The zero value starts a
// node n1 on a loopback port the kernel picks, with the memory store.
type NodeOptions struct {
	// ID is --id; "n1" when empty. The ready line must name it.
	ID string
	// Listen is --listen; "127.0.0.1:0" when empty.
	Listen string
	// Store is --store; when empty the flag is left out and the node uses
	// its default, memory.
	Store string
	// ClusterBind is --cluster-bind, left out when empty.
	ClusterBind string
	// Join is --join, comma-separated, left out when empty.
	Join []string
	// Args are more arguments, after those above (--log-level warn, …).
	Args []string
	// Command, when not nil, is the whole argument list after the binary
	// ("node", then flags), used as is: Listen, Store, ClusterBind, Join
	// and Args add nothing then. For tests that run a command line taken
	// from a shipped unit file or manifest.
	Command []string
	// Env holds extra "KEY=value" entries for the node's environment
	// (ROAM_CLUSTER_SECRET=…).
	Env []string
	// Stdout and Stderr, when set, receive a copy of the node's output
	// (a LineWatcher, to wait for a log line).
	Stdout, Stderr io.Writer
	// ReadyTimeout bounds the wait for the ready line;
	// DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
}

// Node is a running `roam node` process started by StartNode.
type Node struct {
	ID    string
	URL   string // base URL from the ready line: http://127.0.0.1:PORT
	Addr  string // URL's host:port
	Store string // the store kind the ready line names: memory, cluster, …
	PID   int
	// Process is the node's process: Kill, Stop, Freeze, Output, ….
	Process *proc.Process
}

// StartNode runs `roam node` from Roam(t) as opts say, through internal/proc
// (so it has a process group of its own and dies with the test binary), and
// returns once the node has printed its ready line. At cleanup the node is
// killed with SIGKILL, unless it has exited already, and when t failed the
// tail of its output is logged first.
//
// StartNode fails t when the binary is not available, the process cannot
// start, exits or stays silent past the ready timeout (quoting its output),
// or when the ready line names another id than opts.ID.
func StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	if opts.ID == "" {
		opts.ID = "n1"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	args := opts.Command
	if args == nil {
		args = nodeArgs(opts)
	}
	ready := NewLineWatcher(NodeReadyLine)
	stdout := io.Writer(ready)
	if opts.Stdout != nil {
		stdout = io.MultiWriter(ready, opts.Stdout)
	}
	p, err := proc.Start(context.Background(), proc.Spec{
		Name:   "roam node " + opts.ID,
		Path:   Roam(t),
		Args:   args,
		Env:    opts.Env,
		Stdout: stdout,
		Stderr: opts.Stderr,
	})
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	// Registered after Kill, so it runs before: the output is complete up
	// to the failure, and the process is still there to ask.
	t.Cleanup(func() {
		if t.Failed() {
			out := p.Output()
			if len(out) > outputTail {
				out = "…" + out[len(out)-outputTail:]
			}
			t.Logf("output of %s:\n%s", p, out)
		}
	})
	m := ready.Await(t, p, opts.ReadyTimeout)
	if m[1] != opts.ID {
		t.Fatalf("testbin: %s's ready line names node %q, want %q", p, m[1], opts.ID)
	}
	return &Node{
		ID:      m[1],
		URL:     m[2],
		Addr:    strings.TrimPrefix(m[2], "http://"),
		Store:   m[3],
		PID:     p.PID(),
		Process: p,
	}
}

// nodeArgs is the command line opts describe, without Command.
func nodeArgs(opts NodeOptions) []string {
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"node", "--id", opts.ID, "--listen", listen}
	if opts.Store != "" {
		args = append(args, "--store", opts.Store)
	}
	if opts.ClusterBind != "" {
		args = append(args, "--cluster-bind", opts.ClusterBind)
	}
	if len(opts.Join) > 0 {
		args = append(args, "--join", strings.Join(opts.Join, ","))
	}
	return append(args, opts.Args...)
}
