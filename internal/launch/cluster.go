package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// Errors the Cluster methods return (wrapped) for callers to branch on.
var (
	// ErrUnknownNode: no node has the given id.
	ErrUnknownNode = errors.New("launch: unknown node")
	// ErrNodeRunning: the node is already running or starting.
	ErrNodeRunning = errors.New("launch: node is already running")
	// ErrNodeNotRunning: the node has been killed, has stopped or exited.
	ErrNodeNotRunning = errors.New("launch: node is not running")
	// ErrClusterStopped: Stop has been called; nothing starts any more.
	ErrClusterStopped = errors.New("launch: cluster is stopped")
	// ErrNotStarted: Start has not succeeded yet.
	ErrNotStarted = errors.New("launch: cluster not started")
)

// ClusterSecretEnv is the environment variable through which nodes of a
// cluster: strategy receive their shared secret (roam node reads it when
// --cluster-secret-file is not given).
const ClusterSecretEnv = "ROAM_CLUSTER_SECRET"

// Defaults for the zero values of Options.
const (
	DefaultNodes        = 3
	DefaultHost         = "127.0.0.1"
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopTimeout  = 8 * time.Second
	// MaxNodes bounds Options.Nodes and Add: every node is a process on
	// this one machine.
	MaxNodes = 32
)

// portAttempts is how often a node start that lost a port race (see
// proc.FreePort) is retried on fresh ports.
const portAttempts = 3

// Options configures a Cluster. The zero value runs three nodes of the
// default strategy (backup) on 127.0.0.1 from the running executable.
type Options struct {
	// Strategy names the strategy (see Strategies); DefaultStrategy when
	// empty.
	Strategy string
	// Nodes is how many nodes Start launches; DefaultNodes when zero.
	Nodes int
	// Binary is the roam executable run as `roam node`; the running
	// executable (os.Executable) when empty.
	Binary string
	// Host is the loopback address nodes listen on; DefaultHost when
	// empty. Addresses outside 127.0.0.0/8 (and ::1) are refused.
	Host string
	// StoreURL is the external store for the redis, redis-sentinel,
	// redis-cluster, memcached, postgres and mysql strategies, in the form
	// roam node's --store takes (redis://127.0.0.1:6379, postgres://…).
	// When empty, Start runs a server of its own (internal/servers: free
	// loopback ports, files in a temporary directory that Stop removes) if
	// the machine has one installed, and otherwise fails with an error
	// wrapping ErrServerMissing that names the package to install. It is
	// an error for the other strategies.
	StoreURL string
	// LogDir, when set, receives each node's output in LogDir/ID.log
	// (appended across restarts).
	LogDir string
	// Output, when set, receives every node's output, each line prefixed
	// with "ID | ".
	Output io.Writer
	// NodeArgs are extra arguments for every `roam node`, such as
	// "--log-level=debug".
	NodeArgs []string
	// Env holds extra "KEY=value" entries for the nodes' environment.
	Env []string
	// ReadyTimeout bounds how long one node may take to print its ready
	// line and answer /readyz; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// StopTimeout bounds a node's graceful stop before it is killed;
	// DefaultStopTimeout when zero.
	StopTimeout time.Duration
	// Logger receives the cluster's own events (node started, exited);
	// slog.Default() when nil.
	Logger *slog.Logger
}

// State is where a node is in its life.
type State string

// The node states.
const (
	StateStarting State = "starting" // launched, not yet ready
	StateRunning  State = "running"  // ready: printed its ready line and answers /readyz
	StateKilled   State = "killed"   // killed with SIGKILL by Kill
	StateStopped  State = "stopped"  // stopped gracefully by Stop or Restart
	StateExited   State = "exited"   // exited on its own: a crash, or it failed to start
)

// Alive reports whether a process of the node is (or is becoming) live.
func (s State) Alive() bool { return s == StateStarting || s == StateRunning }

// Node describes one node at one moment.
type Node struct {
	ID string
	// URL is the node's base URL (http://127.0.0.1:PORT); empty until its
	// first start printed its address. It stays the same across restarts.
	URL string
	// Addr is URL's host:port.
	Addr string
	// ClusterAddr is the node's gossip/replication address under cluster:
	// strategies, "" otherwise.
	ClusterAddr string
	// PID of the current (or last) process; 0 before the first start.
	PID   int
	State State
	// Started is when the current (or last) process was started.
	Started time.Time
	// Exit describes how the last process ended ("signal: killed",
	// "exit status 1"), "" while it runs.
	Exit string
}

// Cluster is a set of roam node processes sharing one strategy. Its
// methods are safe for concurrent use. Create it with New; Start it once;
// Stop it when done, also after a failed Start.
type Cluster struct {
	opts     Options
	strategy Strategy
	bin      string
	host     string
	secret   string
	log      *slog.Logger

	mu      sync.Mutex
	nodes   []*node
	seq     int    // the last node number handed out
	spec    string // the store SPEC nodes open; set by Start
	server  *server
	started bool
	stopped bool
	stopErr error
	wg      sync.WaitGroup // exit watchers

	// serverMu serialises KillServer and RestartServer.
	serverMu sync.Mutex
}

// node is the Cluster's record of one node; guarded by Cluster.mu.
type node struct {
	id          string
	addr        string // fixed after the first ready line
	clusterPort int
	p           *proc.Process
	gen         int // incremented by every start: an old process's exit must not touch a new one
	state       State
	started     time.Time
	exit        string
}

func (n *node) snapshot(host string) Node {
	s := Node{ID: n.id, Addr: n.addr, State: n.state, Started: n.started, Exit: n.exit}
	if n.addr != "" {
		s.URL = "http://" + n.addr
	}
	if n.clusterPort != 0 {
		s.ClusterAddr = net.JoinHostPort(host, strconv.Itoa(n.clusterPort))
	}
	if n.p != nil {
		s.PID = n.p.PID()
	}
	return s
}

// New checks opts and returns a Cluster that has started nothing yet. It
// fails with an error wrapping ErrUnknownStrategy for an unknown strategy,
// and with a descriptive error for a node count outside 1…MaxNodes, a
// non-loopback host, a missing binary, or a StoreURL given to a strategy
// without an external store.
func New(opts Options) (*Cluster, error) {
	st, err := Lookup(opts.Strategy)
	if err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.Nodes < 1 || opts.Nodes > MaxNodes {
		return nil, fmt.Errorf("launch: %d nodes: want 1 to %d", opts.Nodes, MaxNodes)
	}
	host := opts.Host
	if host == "" {
		host = DefaultHost
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("launch: host %q: nodes listen on a loopback address only (127.0.0.1, ::1)", host)
	}
	if opts.StoreURL != "" && !st.External() {
		return nil, fmt.Errorf("launch: strategy %s keeps sessions in %s: it takes no store URL", st.Name, st.Store)
	}
	if opts.StoreURL != "" {
		if err := checkStoreURL(st, opts.StoreURL); err != nil {
			return nil, err
		}
	}
	bin := opts.Binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("launch: find the roam executable: %w", err)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("launch: roam binary: %w", err)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cluster{opts: opts, strategy: st, bin: bin, host: host, log: opts.Logger}
	if strings.HasPrefix(st.Store, "cluster:") {
		b := make([]byte, 32)
		rand.Read(b)
		c.secret = hex.EncodeToString(b)
	}
	return c, nil
}

// Strategy returns the cluster's strategy.
func (c *Cluster) Strategy() Strategy { return c.strategy }

// StoreSpec returns the SPEC the nodes open (with any password redacted
// as storespec would), or "" before Start has chosen it.
func (c *Cluster) StoreSpec() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return redact(c.spec)
}

// Start launches the external server the strategy needs (unless
// Options.StoreURL names one) and Options.Nodes nodes, and returns once
// every node is ready. Under cluster: strategies the first node starts
// alone and the others join it; otherwise all start at once.
//
// When a node does not become ready, Start stops everything it started
// and returns an error: a *NodeError (with the node's last output) for a
// node that exited or hung, an error wrapping ErrServerMissing when the
// strategy's server is not installed, ctx's error when ctx ended first.
// Start may be called once.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.stopped:
		c.mu.Unlock()
		return ErrClusterStopped
	case c.started || len(c.nodes) > 0:
		c.mu.Unlock()
		return errors.New("launch: Start called twice")
	}
	for range c.opts.Nodes {
		c.seq++
		c.nodes = append(c.nodes, &node{id: "n" + strconv.Itoa(c.seq), state: StateStarting})
	}
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()

	err := c.startAll(ctx, nodes)
	if err != nil {
		_ = c.Stop(context.WithoutCancel(ctx))
		return err
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	return nil
}

func (c *Cluster) startAll(ctx context.Context, nodes []*node) error {
	spec := c.strategy.Store
	if c.strategy.External() {
		spec = c.opts.StoreURL
		if spec == "" {
			srv, err := startServer(ctx, c.strategy, c.opts, c.log)
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.server = srv
			stopped := c.stopped
			c.mu.Unlock()
			if stopped {
				return ErrClusterStopped
			}
			spec = srv.spec
		}
	}
	if c.clustered() {
		// Replication gets a port of its own beside gossip; port 0 lets
		// each node's kernel choose (peers learn it through gossip), where
		// the default, the gossip port + 1, could be another node's.
		spec += "?peer=" + net.JoinHostPort(c.host, "0")
	}
	c.mu.Lock()
	c.spec = spec
	c.mu.Unlock()

	rest := nodes
	if c.clustered() {
		// The first node forms the cluster alone; the others need a live
		// member to join.
		if err := c.launch(ctx, nodes[0]); err != nil {
			return err
		}
		rest = nodes[1:]
	}
	errs := make([]error, len(rest))
	var wg sync.WaitGroup
	for i, n := range rest {
		wg.Go(func() { errs[i] = c.launch(ctx, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) clustered() bool { return strings.HasPrefix(c.strategy.Store, "cluster:") }

// Nodes returns every node, n1 first, including killed and exited ones.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.snapshot(c.host)
	}
	return out
}

// Node returns the node called id, and false when there is none.
func (c *Cluster) Node(id string) (Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.find(id); n != nil {
		return n.snapshot(c.host), true
	}
	return Node{}, false
}

func (c *Cluster) find(id string) *node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// Kill crashes the node: SIGKILL to it and its process group, without
// warning, the way a power cut would. It returns once the process is gone.
// It fails with ErrUnknownNode, or ErrNodeNotRunning when the node is not
// running or starting.
func (c *Cluster) Kill(id string) error {
	c.mu.Lock()
	n := c.find(id)
	if n == nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	if !n.state.Alive() || n.p == nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s is %s", ErrNodeNotRunning, id, n.state)
	}
	n.state = StateKilled
	p, gen := n.p, n.gen
	c.mu.Unlock()
	if err := p.Kill(); err != nil {
		return fmt.Errorf("launch: kill %s: %w", id, err)
	}
	// Record the exit now rather than leave it to the watcher, so that
	// Node shows it as soon as Kill returns.
	c.recordExit(n, p, gen)
	c.log.Info("node killed", "node", id, "pid", p.PID())
	return nil
}

// StartNode starts a node that was killed, stopped or exited, with the
// same id and address, joining the live members under cluster:
// strategies. It returns once the node is ready. It fails with
// ErrUnknownNode, ErrNodeRunning when the node is running or starting,
// ErrClusterStopped, ErrNotStarted, or a *NodeError when the node does not
// become ready.
func (c *Cluster) StartNode(ctx context.Context, id string) (Node, error) {
	c.mu.Lock()
	if err := c.usable(); err != nil {
		c.mu.Unlock()
		return Node{}, err
	}
	n := c.find(id)
	if n == nil {
		c.mu.Unlock()
		return Node{}, fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	if n.state.Alive() {
		c.mu.Unlock()
		return Node{}, fmt.Errorf("%w: %s", ErrNodeRunning, id)
	}
	n.state = StateStarting
	c.mu.Unlock()
	if err := c.launch(ctx, n); err != nil {
		return Node{}, err
	}
	nd, _ := c.Node(id)
	return nd, nil
}

// Restart stops the node gracefully when it runs (SIGTERM, then SIGKILL
// after Options.StopTimeout), then starts it again as StartNode does.
func (c *Cluster) Restart(ctx context.Context, id string) (Node, error) {
	c.mu.Lock()
	n := c.find(id)
	if n == nil {
		c.mu.Unlock()
		return Node{}, fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	var p *proc.Process
	if n.state.Alive() && n.p != nil {
		n.state = StateStopped
		p = n.p
	}
	c.mu.Unlock()
	if p != nil {
		if err := p.Stop(c.opts.StopTimeout); err != nil && !errors.Is(err, proc.ErrStopTimedOut) {
			return Node{}, fmt.Errorf("launch: restart %s: %w", id, err)
		}
	}
	return c.StartNode(ctx, id)
}

// Add starts one more node, n<k+1>, and returns it once it is ready. It
// fails with ErrNotStarted, ErrClusterStopped, an error when MaxNodes are
// already there, or a *NodeError. The failed node stays listed (exited) so
// that ids are never reused for a different process.
func (c *Cluster) Add(ctx context.Context) (Node, error) {
	c.mu.Lock()
	if err := c.usable(); err != nil {
		c.mu.Unlock()
		return Node{}, err
	}
	if len(c.nodes) >= MaxNodes {
		c.mu.Unlock()
		return Node{}, fmt.Errorf("launch: already %d nodes, the most one machine runs here", MaxNodes)
	}
	c.seq++
	n := &node{id: "n" + strconv.Itoa(c.seq), state: StateStarting}
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	if err := c.launch(ctx, n); err != nil {
		return Node{}, err
	}
	nd, _ := c.Node(n.id)
	return nd, nil
}

// usable reports why nodes cannot be started now. The caller holds c.mu.
func (c *Cluster) usable() error {
	switch {
	case c.stopped:
		return ErrClusterStopped
	case !c.started:
		return ErrNotStarted
	}
	return nil
}

// Stop stops every node gracefully and at once (SIGTERM, SIGKILL after
// Options.StopTimeout), then the server Start started, and removes that
// server's temporary files. It returns once all of them are gone, with an
// error joining what went wrong (a node that had to be killed counts). ctx
// bounds the wait; when it ends first, everything left is killed. Stop
// may be called more than once; later calls return the first result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		c.wg.Wait()
		return c.stopErr
	}
	c.stopped = true
	var procs []*proc.Process
	for _, n := range c.nodes {
		if n.state.Alive() && n.p != nil {
			n.state = StateStopped
			procs = append(procs, n.p)
		}
	}
	srv := c.server
	c.mu.Unlock()

	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			done := make(chan error, 1)
			go func() { done <- p.Stop(c.opts.StopTimeout) }()
			select {
			case errs[i] = <-done:
			case <-ctx.Done():
				errs[i] = errors.Join(ctx.Err(), p.Kill())
				<-done
			}
		})
	}
	wg.Wait()
	if srv != nil {
		errs = append(errs, srv.stop(ctx))
	}
	c.wg.Wait()
	err := errors.Join(errs...)
	c.mu.Lock()
	c.stopErr = err
	c.mu.Unlock()
	return err
}
