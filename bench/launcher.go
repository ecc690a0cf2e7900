package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/roamsession/roam/internal/launch"
	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/lb"
)

// Timing of the balancer-side steps of faults.
const (
	// drainFor is how long a node of a rolling restart is drained in the
	// balancer before it is stopped: long enough for requests in flight
	// to finish, short enough that a restart of N nodes fits in a run.
	drainFor = time.Second
	// upWithin bounds the wait for the balancer to send traffic to a node
	// that was (re)started.
	upWithin = 20 * time.Second
	// coolDown replaces the balancer's passive cool-down (10 s by
	// default): a node killed and restarted takes traffic again within
	// seconds, as after a supervisor's restart, instead of the balancer
	// shunning a healthy node for the rest of a short run. Active health
	// checks still take a dead node out within two seconds.
	coolDown = 2 * time.Second
)

// ProcessLauncher starts clusters the way `roam demo` does: package
// internal/launch runs the nodes, and any store server the strategy
// needs, as separate OS processes (so a kill is a real crash), and a
// balancer (package lb) runs in this process in front of them with the
// strategy's policy and otherwise default settings, but for a passive
// cool-down of 2 s and a drain timeout of 2 s. The zero value runs the
// running executable as `roam node`.
type ProcessLauncher struct {
	// Binary is the roam executable; the running one when empty.
	Binary string
	// StoreURLs gives external strategies a store to use instead of one
	// launch starts itself, by strategy name ("redis":
	// "redis://127.0.0.1:6379").
	StoreURLs map[string]string
	// LogDir, when set, receives each run's node output in
	// LogDir/STRATEGY-nN/ID.log.
	LogDir string
	// Logger receives launch's and the balancer's logs; slog.Default()
	// when nil.
	Logger *slog.Logger
}

// Launch starts s.Nodes nodes of s.Strategy and a balancer in front of
// them. It fails with launch's errors (wrapped): launch.ErrUnknownStrategy,
// launch.ErrServerMissing when the store server is not installed and no
// URL was given, a *launch.NodeError for a node that did not start.
func (p ProcessLauncher) Launch(ctx context.Context, s Setup) (Cluster, error) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	st, err := launch.Lookup(s.Strategy)
	if err != nil {
		return nil, err
	}
	opts := launch.Options{
		Strategy: s.Strategy, Nodes: s.Nodes, Binary: p.Binary,
		StoreURL: p.StoreURLs[s.Strategy], Logger: log,
	}
	if p.LogDir != "" {
		opts.LogDir = filepath.Join(p.LogDir, s.Strategy+"-n"+strconv.Itoa(s.Nodes))
	}
	lc, err := launch.New(opts)
	if err != nil {
		return nil, err
	}
	if err := lc.Start(ctx); err != nil {
		_ = lc.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &lb.Config{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Policy:       st.Policy,
		Secret:       hex.EncodeToString(secret),
		DrainTimeout: lb.Duration(2 * time.Second),
		Health:       lb.HealthConfig{PassiveCoolDown: lb.Duration(coolDown)},
		Logger:       log,
	}
	for _, n := range lc.Nodes() {
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{ID: n.ID, URL: n.URL, PID: n.PID})
	}
	bal, err := lb.New(cfg)
	if err != nil {
		_ = lc.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("bench: balancer: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = lc.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("bench: balancer listen: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c := &procCluster{lc: lc, lb: bal, url: "http://" + ln.Addr().String(), stopLB: stop, served: make(chan error, 1)}
	go func() { c.served <- bal.Serve(sctx, ln, nil) }()
	return c, nil
}

// procCluster is a Cluster of launch's processes behind an in-process
// balancer.
type procCluster struct {
	lc     *launch.Cluster
	lb     *lb.LB
	url    string
	stopLB context.CancelFunc
	served chan error

	stopOnce sync.Once
	stopErr  error
}

func (c *procCluster) URL() string { return c.url }

func (c *procCluster) Nodes() []Node {
	ns := c.lc.Nodes()
	out := make([]Node, len(ns))
	for i, n := range ns {
		out[i] = Node{ID: n.ID, URL: n.URL, PID: n.PID, Alive: n.State.Alive()}
	}
	return out
}

func (c *procCluster) Kill(id string) error { return c.lc.Kill(id) }

func (c *procCluster) Restart(ctx context.Context, id string) error {
	n, err := c.lc.Restart(ctx, id)
	if err != nil {
		return err
	}
	return c.backUp(ctx, n)
}

// backUp tells the balancer the node's new pid and waits until it sends
// the node traffic again.
func (c *procCluster) backUp(ctx context.Context, n launch.Node) error {
	_ = c.lb.SetPID(n.ID, n.PID)
	ctx, cancel := context.WithTimeout(ctx, upWithin)
	defer cancel()
	err := proc.Poll(ctx, func(context.Context) error {
		for _, s := range c.lb.Nodes() {
			if s.ID == n.ID {
				if s.State == lb.StateUp.String() {
					return nil
				}
				return fmt.Errorf("balancer sees %s %s", n.ID, s.State)
			}
		}
		return fmt.Errorf("%w: %s", lb.ErrUnknownBackend, n.ID)
	})
	if err != nil {
		return fmt.Errorf("bench: %s restarted but the balancer does not use it: %w", n.ID, err)
	}
	return nil
}

func (c *procCluster) RollingRestart(ctx context.Context) error {
	for _, n := range c.lc.Nodes() {
		if !n.State.Alive() {
			continue
		}
		if err := c.lb.Drain(n.ID, drainFor); err != nil {
			return err
		}
		t := time.NewTimer(drainFor)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = c.lb.Undrain(n.ID)
			return ctx.Err()
		case <-t.C:
		}
		nn, err := c.lc.Restart(ctx, n.ID)
		_ = c.lb.Undrain(n.ID)
		if err != nil {
			return fmt.Errorf("bench: rolling restart of %s: %w", n.ID, err)
		}
		if err := c.backUp(ctx, nn); err != nil {
			return err
		}
	}
	return nil
}

func (c *procCluster) Add(ctx context.Context) (Node, error) {
	n, err := c.lc.Add(ctx)
	if err != nil {
		return Node{}, err
	}
	if err := c.lb.AddBackend(lb.BackendConfig{ID: n.ID, URL: n.URL, PID: n.PID}); err != nil {
		return Node{}, fmt.Errorf("bench: put %s behind the balancer: %w", n.ID, err)
	}
	if err := c.backUp(ctx, n); err != nil {
		return Node{}, err
	}
	return Node{ID: n.ID, URL: n.URL, PID: n.PID, Alive: true}, nil
}

// storeServer is what launch needs to offer for kill-store faults: a crash
// of the server it started (the primary of a replicated one) and a start
// of it again on the same address.
type storeServer interface {
	KillServer(ctx context.Context) error
	RestartServer(ctx context.Context) error
}

func (c *procCluster) KillStore(ctx context.Context) error {
	if !c.lc.Strategy().External() {
		return fmt.Errorf("%w: strategy %s keeps sessions in %s", ErrNoStore, c.lc.Strategy().Name, c.lc.Strategy().Holds)
	}
	s, ok := any(c.lc).(storeServer)
	if !ok {
		return fmt.Errorf("%w: internal/launch cannot crash its store server yet", ErrNoStore)
	}
	return s.KillServer(ctx)
}

func (c *procCluster) RestoreStore(ctx context.Context) error {
	s, ok := any(c.lc).(storeServer)
	if !ok || !c.lc.Strategy().External() {
		return fmt.Errorf("%w: nothing to restore", ErrNoStore)
	}
	return s.RestartServer(ctx)
}

func (c *procCluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopLB()
		var lbErr error
		select {
		case lbErr = <-c.served:
		case <-ctx.Done():
			lbErr = fmt.Errorf("bench: balancer did not stop: %w", ctx.Err())
		}
		c.stopErr = errors.Join(lbErr, c.lc.Stop(ctx))
	})
	return c.stopErr
}
