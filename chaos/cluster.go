package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roamsession/roam/bench"
	"github.com/roamsession/roam/chaos/internal/faultproxy"
	"github.com/roamsession/roam/chaos/internal/netmesh"
	"github.com/roamsession/roam/internal/launch"
	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/lb"
)

// Errors the Cluster methods return (wrapped) for callers to branch on.
var (
	// ErrNoPartitions: the cluster was not started with Options.Isolated,
	// so its nodes share one network stack and cannot be partitioned.
	ErrNoPartitions = errors.New("chaos: nodes are not isolated: no partitions")
	// ErrUnknownNode: no node has the given id.
	ErrUnknownNode = errors.New("chaos: unknown node")
	// ErrNodeState: the node is not in a state the call applies to (kill
	// of a killed node, thaw of a running one).
	ErrNodeState = errors.New("chaos: node in the wrong state")
)

// Ports of a node inside its own network host (Options.Isolated): every
// node has a host of its own, so all of them use the same ones.
const (
	isolatedHTTPPort   = 9000
	isolatedGossipPort = 7946
	isolatedPeerPort   = 7947
)

// Defaults for the zero values of Options.
const (
	DefaultNodes        = 3
	DefaultReadyTimeout = 40 * time.Second
	stopTimeout         = 5 * time.Second
)

// Options configures a Cluster. Strategy and Binary are required.
type Options struct {
	// Strategy names the store and balancing policy, as internal/launch
	// defines them: all, backup, redis-sentinel, …
	Strategy string
	// Nodes is how many nodes to run; DefaultNodes when zero.
	Nodes int
	// Binary is the roam executable each node runs as `roam node`.
	Binary string
	// StoreURL is the store SPEC for strategies with an external store
	// (redis-sentinel://…); it is an error for the others.
	StoreURL string
	// Isolated puts every node in a network namespace of its own
	// (package netmesh), so that Partition can cut nodes apart. It needs
	// root; Start fails with an error wrapping netmesh.ErrUnavailable
	// without it. When false the nodes share 127.0.0.1.
	Isolated bool
	// NodeArgs are extra arguments for every node.
	NodeArgs []string
	// LogDir, when set, receives each node's output in LogDir/ID.log.
	LogDir string
	// ReadyTimeout bounds one node's start; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// Logger receives the cluster's and the balancer's events;
	// slog.Default() when nil.
	Logger *slog.Logger
}

// NodeState is what the suite has done to a node.
type NodeState string

// The node states.
const (
	NodeRunning NodeState = "running"
	NodeKilled  NodeState = "killed"
	NodeFrozen  NodeState = "frozen"
	NodeStopped NodeState = "stopped"
)

// Node describes one node at one moment.
type Node struct {
	ID string
	// URL reaches the node through its fault proxy, the way the balancer
	// does: a node isolated from the balancer is unreachable here too.
	URL string
	// Addr is the node's own HTTP address (inside its host when
	// isolated).
	Addr  string
	PID   int
	State NodeState
}

// Cluster is a set of roam node processes behind an in-process balancer
// (package lb, with the strategy's policy), each node behind a fault
// proxy and, when isolated, on a network host of its own. Its methods are
// safe for concurrent use. Create it with NewCluster, Start it once, Stop
// it when done (also after a failed Start).
type Cluster struct {
	opts     Options
	strategy launch.Strategy
	secret   string
	log      *slog.Logger
	mesh     *netmesh.Mesh

	lb     *lb.LB
	lbURL  string
	stopLB context.CancelFunc
	lbDone chan error

	mu      sync.Mutex
	nodes   []*node
	stopped bool
}

type node struct {
	id     string
	idx    int
	addr   string // HTTP, fixed after the first start
	gossip string // cluster bind address, "" for non-cluster stores
	peer   string // replication listener
	proxy  *faultproxy.Proxy
	p      *proc.Process
	state  NodeState
	starts int
}

// NewCluster checks opts and returns a Cluster that has started nothing.
func NewCluster(opts Options) (*Cluster, error) {
	st, err := launch.Lookup(opts.Strategy)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.Nodes < 1 || opts.Nodes > netmesh.MaxHosts {
		return nil, fmt.Errorf("chaos: %d nodes: want 1 to %d", opts.Nodes, netmesh.MaxHosts)
	}
	if opts.Binary == "" {
		return nil, errors.New("chaos: Options.Binary is empty")
	}
	if st.External() != (opts.StoreURL != "") {
		return nil, fmt.Errorf("chaos: strategy %s: StoreURL %q: an external store needs one, the others take none", st.Name, opts.StoreURL)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := make([]byte, 32)
	rand.Read(b)
	return &Cluster{opts: opts, strategy: st, secret: hex.EncodeToString(b), log: opts.Logger}, nil
}

// Strategy returns the cluster's strategy.
func (c *Cluster) Strategy() launch.Strategy { return c.strategy }

// Isolated reports whether the nodes are on hosts of their own, which
// Partition needs.
func (c *Cluster) Isolated() bool { return c.mesh != nil }

// URL returns the balancer's base URL, where users go.
func (c *Cluster) URL() string { return c.lbURL }

func (c *Cluster) clustered() bool { return strings.HasPrefix(c.strategy.Store, "cluster:") }

// Start makes the network hosts (when isolated), starts the nodes (under
// cluster: strategies the first alone, the others joining it) and the
// balancer, and returns once every node is ready and the balancer
// routes to all of them. It fails with the first node's error, with its
// last output.
func (c *Cluster) Start(ctx context.Context) error {
	if c.opts.Isolated {
		m, err := netmesh.New(ctx, netmesh.Options{Hosts: c.opts.Nodes})
		if err != nil {
			return err
		}
		c.mesh = m
	}
	c.mu.Lock()
	for i := range c.opts.Nodes {
		n := &node{id: "n" + strconv.Itoa(i+1), idx: i, state: NodeStopped}
		if c.mesh != nil {
			host := c.mesh.Addr(i).String()
			n.addr = net.JoinHostPort(host, strconv.Itoa(isolatedHTTPPort))
			if c.clustered() {
				n.gossip = net.JoinHostPort(host, strconv.Itoa(isolatedGossipPort))
				n.peer = net.JoinHostPort(host, strconv.Itoa(isolatedPeerPort))
			}
		} else if c.clustered() {
			port, err := proc.FreePort("127.0.0.1")
			if err != nil {
				c.mu.Unlock()
				return err
			}
			n.gossip = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			n.peer = "127.0.0.1:0" // the kernel picks; peers learn it by gossip
		}
		c.nodes = append(c.nodes, n)
	}
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()

	rest := nodes
	if c.clustered() {
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
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.startBalancer(ctx)
}

func (c *Cluster) startBalancer(ctx context.Context) error {
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &lb.Config{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Policy: c.strategy.Policy,
		Secret: hex.EncodeToString(secret),
		// Faster than the defaults, so that a run of a minute sees a
		// dead node leave and come back several times.
		Health: lb.HealthConfig{
			Interval: lb.Duration(300 * time.Millisecond), Timeout: lb.Duration(500 * time.Millisecond),
			PassiveCoolDown: lb.Duration(2 * time.Second),
		},
		Timeouts:     lb.TimeoutConfig{Connect: lb.Duration(time.Second), Backend: lb.Duration(6 * time.Second)},
		DrainTimeout: lb.Duration(time.Second),
		Logger:       c.log.With("component", "lb"),
	}
	for _, n := range c.Nodes() {
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{ID: n.ID, URL: n.URL, PID: n.PID})
	}
	bal, err := lb.New(cfg)
	if err != nil {
		return fmt.Errorf("chaos: balancer: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("chaos: balancer listen: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.lb, c.lbURL, c.stopLB, c.lbDone = bal, "http://"+ln.Addr().String(), stop, make(chan error, 1)
	go func() { c.lbDone <- bal.Serve(sctx, ln, nil) }()
	return c.waitBalancerUp(ctx, nil)
}

// waitBalancerUp waits until the balancer sends traffic to every node in
// ids (every node when nil).
func (c *Cluster) waitBalancerUp(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return proc.Poll(ctx, func(context.Context) error {
		for _, s := range c.lb.Nodes() {
			if (ids == nil || slices.Contains(ids, s.ID)) && s.State != lb.StateUp.String() {
				return fmt.Errorf("balancer sees %s %s", s.ID, s.State)
			}
		}
		return nil
	})
}

// readyLine is what roam node prints to stdout once it serves.
var readyLine = regexp.MustCompile(`roam node (\S+) listening on http://(\S+) store=`)

// launch starts n's process and waits until it answers /readyz 200
// through its proxy.
func (c *Cluster) launch(ctx context.Context, n *node) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("chaos: cluster stopped")
	}
	listen := n.addr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	spec := c.strategy.Store
	if c.strategy.External() {
		spec = c.opts.StoreURL
	}
	args := []string{"node", "--id", n.id, "--listen", listen, "--shutdown-timeout", (stopTimeout / 2).String()}
	if c.clustered() {
		spec += "?peer=" + n.peer
		args = append(args, "--cluster-bind", n.gossip)
		var join []string
		for _, o := range c.nodes {
			if o != n && o.state != NodeKilled && o.state != NodeStopped {
				join = append(join, o.gossip)
			}
		}
		if len(join) > 0 {
			args = append(args, "--join", strings.Join(join, ","))
		}
	}
	args = append(args, "--store", spec)
	args = append(args, c.opts.NodeArgs...)
	path := c.opts.Binary
	if c.mesh != nil {
		path, args = c.mesh.Wrap(n.idx, path, args)
	}
	ready := &lineWatcher{re: readyLine, found: make(chan []string, 1)}
	ps := proc.Spec{
		Name:   "roam node " + n.id,
		Path:   path,
		Args:   args,
		Env:    []string{launch.ClusterSecretEnv + "=" + c.secret},
		Stdout: ready,
	}
	if c.opts.LogDir != "" {
		ps.LogFile = filepath.Join(c.opts.LogDir, n.id+".log")
	}
	p, err := proc.Start(context.WithoutCancel(ctx), ps)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("chaos: start %s: %w", n.id, err)
	}
	n.p, n.state = p, NodeRunning
	n.starts++
	c.mu.Unlock()

	fail := func(err error) error {
		_ = p.Kill()
		c.mu.Lock()
		n.state = NodeKilled
		c.mu.Unlock()
		return fmt.Errorf("chaos: node %s did not start: %w; its last output:\n%s", n.id, err, tail(p.Output(), 8))
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	var addr string
	select {
	case m := <-ready.found:
		addr = m[2]
	case <-p.Exited():
		return fail(fmt.Errorf("exited: %v", p.Wait()))
	case <-rctx.Done():
		return fail(rctx.Err())
	}
	if n.proxy == nil {
		if err := c.makeProxy(n, addr); err != nil {
			return fail(err)
		}
	}
	if err := proc.WaitHTTP(rctx, "http://"+n.proxy.Addr()+"/readyz", http.StatusOK); err != nil {
		return fail(err)
	}
	c.log.Info("chaos: node ready", "node", n.id, "pid", p.PID(), "addr", addr)
	return nil
}

func (c *Cluster) makeProxy(n *node, addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n.addr = addr
	opts := faultproxy.Options{Target: addr, Logger: c.log}
	if c.mesh != nil {
		idx := n.idx
		opts.Dial = func(ctx context.Context, network, a string) (net.Conn, error) {
			return c.mesh.Dial(ctx, idx, network, a)
		}
	}
	p, err := faultproxy.New(opts)
	if err != nil {
		return err
	}
	n.proxy = p
	return nil
}

// Nodes returns every node, n1 first.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.snapshot()
	}
	return out
}

// NodeIDs returns every node's id, n1 first.
func (c *Cluster) NodeIDs() []string {
	var ids []string
	for _, n := range c.Nodes() {
		ids = append(ids, n.ID)
	}
	return ids
}

func (n *node) snapshot() Node {
	s := Node{ID: n.id, Addr: n.addr, State: n.state}
	if n.proxy != nil {
		s.URL = "http://" + n.proxy.Addr()
	}
	if n.p != nil {
		s.PID = n.p.PID()
	}
	return s
}

func (c *Cluster) find(id string) (*node, error) {
	for _, n := range c.nodes {
		if n.id == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownNode, id)
}

// Kill crashes the node with SIGKILL and returns once it is gone.
func (c *Cluster) Kill(id string) error {
	c.mu.Lock()
	n, err := c.find(id)
	if err == nil && n.state != NodeRunning && n.state != NodeFrozen {
		err = fmt.Errorf("%w: kill %s, which is %s", ErrNodeState, id, n.state)
	}
	if err != nil {
		c.mu.Unlock()
		return err
	}
	n.state = NodeKilled
	p := n.p
	c.mu.Unlock()
	return p.Kill()
}

// Revive starts a killed node again with the same id and addresses,
// joining the running nodes, and returns once it is ready and the
// balancer routes to it.
func (c *Cluster) Revive(ctx context.Context, id string) error {
	c.mu.Lock()
	n, err := c.find(id)
	if err == nil && n.state != NodeKilled {
		err = fmt.Errorf("%w: revive %s, which is %s", ErrNodeState, id, n.state)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.launch(ctx, n); err != nil {
		return err
	}
	_ = c.lb.SetPID(id, n.p.PID())
	return c.waitBalancerUp(ctx, []string{id})
}

// Freeze stops the node with SIGSTOP: its connections stay open and
// nothing answers, like a long garbage-collection pause.
func (c *Cluster) Freeze(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.find(id)
	if err != nil {
		return err
	}
	if n.state != NodeRunning {
		return fmt.Errorf("%w: freeze %s, which is %s", ErrNodeState, id, n.state)
	}
	if err := n.p.Freeze(); err != nil {
		return err
	}
	n.state = NodeFrozen
	return nil
}

// Thaw resumes a frozen node with SIGCONT.
func (c *Cluster) Thaw(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.find(id)
	if err != nil {
		return err
	}
	if n.state != NodeFrozen {
		return fmt.Errorf("%w: thaw %s, which is %s", ErrNodeState, id, n.state)
	}
	if err := n.p.Thaw(); err != nil {
		return err
	}
	n.state = NodeRunning
	return nil
}

// Partition cuts every link between the nodes in side and the others:
// gossip and replication between the two groups stop, silently. With
// fromBalancer the nodes in side are cut off from the balancer too (their
// proxies hold all traffic), as when their host's network is gone; without
// it the balancer still reaches every node, which is a split brain. It
// fails with ErrNoPartitions unless the cluster is isolated.
func (c *Cluster) Partition(ctx context.Context, side []string, fromBalancer bool) error {
	if c.mesh == nil {
		return ErrNoPartitions
	}
	c.mu.Lock()
	var in, out []*node
	for _, n := range c.nodes {
		if slices.Contains(side, n.id) {
			in = append(in, n)
		} else {
			out = append(out, n)
		}
	}
	c.mu.Unlock()
	if len(in) != len(side) {
		return fmt.Errorf("%w: partition %v", ErrUnknownNode, side)
	}
	for _, a := range in {
		for _, b := range out {
			if err := c.mesh.Cut(ctx, a.idx, b.idx); err != nil {
				return err
			}
		}
		if fromBalancer {
			if err := a.proxy.SetMode(faultproxy.Blackhole); err != nil {
				return err
			}
		}
	}
	return nil
}

// Heal mends every cut link and lets every proxy pass traffic again.
func (c *Cluster) Heal(ctx context.Context) error {
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var errs []error
	for i, a := range nodes {
		if a.proxy != nil {
			errs = append(errs, a.proxy.SetMode(faultproxy.Pass))
		}
		if c.mesh == nil {
			continue
		}
		for _, b := range nodes[i+1:] {
			if c.mesh.IsCut(a.idx, b.idx) {
				errs = append(errs, c.mesh.Mend(ctx, a.idx, b.idx))
			}
		}
	}
	return errors.Join(errs...)
}

// WaitReady waits until every node runs, answers /readyz with 200, sees
// every node as a ready member (cluster strategies) and is up in the
// balancer. It returns the last thing that was not so when ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	want := float64(len(c.Nodes()))
	err := proc.Poll(ctx, func(ctx context.Context) error {
		for _, n := range c.Nodes() {
			if n.State != NodeRunning {
				return fmt.Errorf("%s is %s", n.ID, n.State)
			}
			code, _, err := get(ctx, client, n.URL+"/readyz")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%s /readyz: %d %v", n.ID, code, err)
			}
			if !c.clustered() {
				continue
			}
			m, err := c.Metrics(ctx, n.ID)
			if err != nil {
				return err
			}
			if got := m.SumWith("roam_cluster_members", "state", "ready"); got != want {
				return fmt.Errorf("%s sees %v ready members, want %v", n.ID, got, want)
			}
		}
		return c.waitBalancerUp(ctx, nil)
	})
	if err != nil {
		return fmt.Errorf("chaos: cluster not ready: %w", err)
	}
	return nil
}

// Metrics reads a node's /metrics through its proxy.
func (c *Cluster) Metrics(ctx context.Context, id string) (bench.Samples, error) {
	var u string
	for _, n := range c.Nodes() {
		if n.ID == id {
			u = n.URL
		}
	}
	if u == "" {
		return nil, fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("chaos: %s /metrics: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("chaos: %s /metrics: %s", id, resp.Status)
	}
	return bench.ParseMetrics(resp.Body)
}

// Stop stops the balancer, then every node gracefully (SIGTERM, SIGKILL
// after a few seconds; frozen nodes are thawed first by proc), closes the
// proxies and removes the network hosts. It returns once all of them are
// gone. Later calls return nil.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var errs []error
	if c.stopLB != nil {
		c.stopLB()
		select {
		case err := <-c.lbDone:
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("chaos: balancer did not stop: %w", ctx.Err()))
		}
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.p == nil {
			continue
		}
		wg.Go(func() {
			if err := n.p.Stop(stopTimeout); err != nil && !errors.Is(err, proc.ErrStopTimedOut) {
				c.log.Warn("chaos: stop node", "node", n.id, "error", err)
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if n.proxy != nil {
			errs = append(errs, n.proxy.Close())
		}
	}
	if c.mesh != nil {
		errs = append(errs, c.mesh.Close())
	}
	return errors.Join(errs...)
}

// get sends a GET and returns the status and up to 64 KiB of the body.
func get(ctx context.Context, client *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}

// lineWatcher watches a process's stdout for the first line matching re
// and sends its submatches on found, once.
type lineWatcher struct {
	re    *regexp.Regexp
	found chan []string
	buf   []byte
	done  bool
}

// Write is called by proc, which serialises the calls.
func (w *lineWatcher) Write(p []byte) (int, error) {
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := w.buf[:i]
		w.buf = w.buf[i+1:]
		if m := w.re.FindSubmatch(line); m != nil {
			s := make([]string, len(m))
			for k, b := range m {
				s[k] = string(b)
			}
			w.done, w.buf = true, nil
			w.found <- s
			break
		}
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[len(w.buf)-(64<<10):]
	}
	return len(p), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
