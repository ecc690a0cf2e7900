package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// joinAddrs returns the cluster addresses of the live members other than
// skip. The caller holds c.mu.
func (c *Cluster) joinAddrs(skip *node) []string {
	var out []string
	for _, n := range c.nodes {
		if n != skip && n.state == StateRunning && n.clusterPort != 0 {
			out = append(out, net.JoinHostPort(c.host, strconv.Itoa(n.clusterPort)))
		}
	}
	return out
}

// launch starts one process for n, marked StateStarting by the caller, and
// waits until it is ready. Lost port races are retried on fresh ports.
func (c *Cluster) launch(ctx context.Context, n *node) error {
	var err error
	for range portAttempts {
		if err = c.launchOnce(ctx, n); !errors.Is(err, errAddrInUse) {
			break
		}
		c.log.Info("node lost a port race; retrying on a fresh port", "node", n.id, "error", err)
	}
	if err != nil {
		c.mu.Lock()
		if n.state == StateStarting {
			n.state = StateExited
		}
		c.mu.Unlock()
	}
	return err
}

// errAddrInUse marks a node start that failed because a port chosen for it
// was taken between proc.FreePort and the node's bind.
var errAddrInUse = errors.New("address already in use")

func (c *Cluster) launchOnce(ctx context.Context, n *node) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return ErrClusterStopped
	}
	listen := n.addr
	if listen == "" {
		// The first start lets the kernel choose and reads the port from
		// the ready line: no race. Restarts reuse it, so the balancer's
		// backend URL stays right.
		listen = net.JoinHostPort(c.host, "0")
	}
	args := []string{"node", "--id", n.id, "--listen", listen, "--store", c.spec,
		"--shutdown-timeout", (c.opts.StopTimeout / 2).String()}
	if c.clustered() {
		if n.clusterPort == 0 {
			// Picked once and kept, like the HTTP port: a restarted member
			// comes back where its peers last saw it.
			port, err := proc.FreePort(c.host)
			if err != nil {
				c.mu.Unlock()
				return err
			}
			n.clusterPort = port
		}
		args = append(args, "--cluster-bind", net.JoinHostPort(c.host, strconv.Itoa(n.clusterPort)))
		if join := c.joinAddrs(n); len(join) > 0 {
			args = append(args, "--join", strings.Join(join, ","))
		}
	}
	args = append(args, c.opts.NodeArgs...)
	env := slices.Clone(c.opts.Env)
	if c.secret != "" {
		env = append(env, ClusterSecretEnv+"="+c.secret)
	}
	ready := newReadyWatcher(n.id)
	spec := proc.Spec{
		Name:   "roam node " + n.id,
		Path:   c.bin,
		Args:   args,
		Env:    env,
		Stdout: teeWriter(ready, c.prefixed(n.id)),
		Stderr: c.prefixed(n.id),
	}
	if c.opts.LogDir != "" {
		spec.LogFile = filepath.Join(c.opts.LogDir, n.id+".log")
	}
	// The node outlives ctx, which only bounds the start; Stop, Kill and
	// the parent-death signal end it.
	p, err := proc.Start(context.WithoutCancel(ctx), spec)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("launch: start %s: %w", n.id, err)
	}
	n.gen++
	gen := n.gen
	n.p, n.started, n.exit = p, time.Now(), ""
	c.wg.Add(1)
	go c.watchExit(n, p, gen)
	c.mu.Unlock()

	addr, err := c.awaitReady(ctx, n.id, p, ready)
	if err != nil {
		_ = p.Kill()
		out := p.Output()
		if strings.Contains(out, "ddress already in use") {
			c.mu.Lock()
			n.clusterPort = 0 // the retry picks a fresh one
			c.mu.Unlock()
			return fmt.Errorf("%w: node %s: %s", errAddrInUse, n.id, lastLine(out))
		}
		return &NodeError{ID: n.id, Output: out, Err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.gen != gen || n.state != StateStarting {
		// Killed or stopped while it was coming up.
		return fmt.Errorf("%w: %s was %s while starting", ErrNodeNotRunning, n.id, n.state)
	}
	n.addr = addr
	n.state = StateRunning
	c.log.Info("node ready", "node", n.id, "url", "http://"+addr, "pid", p.PID(), "took", time.Since(n.started).Round(time.Millisecond).String())
	return nil
}

// awaitReady waits for p's ready line, then for its /readyz to answer 200,
// and returns the address it listens on. It gives up when p exits, ctx
// ends or Options.ReadyTimeout passes.
func (c *Cluster) awaitReady(ctx context.Context, id string, p *proc.Process, ready *readyWatcher) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.ReadyTimeout,
		fmt.Errorf("not ready within %v", c.opts.ReadyTimeout))
	defer cancel()
	var addr string
	select {
	case addr = <-ready.addr:
	case <-p.Exited():
		return "", fmt.Errorf("exited before it was ready (%v)", p.Wait())
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
	// /readyz is the store's verdict: a cluster node answers 503 until its
	// state transfer is done.
	wctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-p.Exited():
			stop(errors.New("exited before /readyz answered"))
		case <-wctx.Done():
		}
	}()
	if err := proc.WaitHTTP(wctx, "http://"+addr+"/readyz", 200); err != nil {
		if cause := context.Cause(wctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return "", fmt.Errorf("%v (%w)", cause, err)
		}
		return "", err
	}
	return addr, nil
}

// watchExit records how the process of generation gen ended.
func (c *Cluster) watchExit(n *node, p *proc.Process, gen int) {
	defer c.wg.Done()
	c.recordExit(n, p, gen)
}

// recordExit waits for p to exit and records how it ended on n, unless a
// newer process has replaced it meanwhile. A running node that exits was
// not asked to: it is marked exited.
func (c *Cluster) recordExit(n *node, p *proc.Process, gen int) {
	err := p.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.gen != gen {
		return
	}
	n.exit = "exit status 0"
	if err != nil {
		n.exit = err.Error()
	}
	if n.state == StateRunning {
		// Neither Kill nor Stop asked for this: a crash.
		n.state = StateExited
		c.log.Warn("node exited on its own", "node", n.id, "pid", p.PID(), "exit", n.exit, "output", lastLines(p.Output(), 5))
	}
}

func (c *Cluster) prefixed(id string) io.Writer {
	if c.opts.Output == nil {
		return nil
	}
	return &prefixWriter{w: c.opts.Output, prefix: id + " | "}
}

// NodeError is returned when a node does not become ready: it exited, hung
// or lost its deadline. Output holds the node's last output, which usually
// says why (a store that cannot be reached, a port in use).
type NodeError struct {
	ID     string
	Output string
	Err    error
}

// Error returns "node ID did not start: ERR" and the node's last lines.
func (e *NodeError) Error() string {
	msg := fmt.Sprintf("launch: node %s did not start: %v", e.ID, e.Err)
	if tail := lastLines(e.Output, 5); tail != "" {
		msg += "; its last output:\n" + tail
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *NodeError) Unwrap() error { return e.Err }
