package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/roamsession/roam/dashboard"
	"github.com/roamsession/roam/internal/adminhost"
	"github.com/roamsession/roam/internal/launch"
	"github.com/roamsession/roam/lb"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

// Balancer settings for the demo: health checks fast enough that the
// dashboard shows a killed node down within about half a second, and a
// restarted one up within a quarter.
const (
	demoHealthInterval = 250 * time.Millisecond
	demoHealthTimeout  = 200 * time.Millisecond
	demoCoolDown       = time.Second
	demoDrainTimeout   = 2 * time.Second
	// demoStopTimeout bounds stopping everything on Ctrl-C; a second
	// Ctrl-C kills what is left at once.
	demoStopTimeout = 20 * time.Second
	// demoUpWait bounds how long a start or add button waits for the
	// balancer to see the node up, so the page shows it at once.
	demoUpWait = 3 * time.Second
)

// demoConfig is the parsed command line of `roam demo`.
type demoConfig struct {
	nodes    int
	strategy string
	listen   string
	admin    string
	storeURL string
	logDir   string
	verbose  bool
	logLevel string
}

func newDemoCmd() *cobra.Command {
	var c demoConfig
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the balancer, N app nodes and the dashboard on this machine",
		Long: `Run the whole system on one machine: the balancer, N demo app nodes (each a
separate roam node process, so killing one is a real crash) and a dashboard.

Open the app, log in, see which node served you; kill that node from the
dashboard, reload, and see whether you are still logged in. The answer
depends on the strategy:

` + strategyList() + `
Strategies backed by an external server start a local one when its binary is
installed and no --store-url is given.

On Ctrl-C or SIGTERM the demo stops every process it started; they also die
with it if it is killed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.nodes, "nodes", launch.DefaultNodes, "number of app nodes")
	f.StringVar(&c.strategy, "strategy", launch.DefaultStrategy, strings.Join(launch.StrategyNames(), " | "))
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "the app's address (the balancer); port 0 picks a free one")
	f.StringVar(&c.admin, "admin", "127.0.0.1:8081", "the dashboard's address (the balancer's admin API); loopback only")
	f.StringVar(&c.storeURL, "store-url", "", "the external store for redis, redis-sentinel, redis-cluster, memcached, postgres and mysql (default: start one)")
	f.StringVar(&c.logDir, "log-dir", "", "write each node's log to DIR/ID.log (default: keep the last lines in memory, shown when a node fails)")
	f.BoolVarP(&c.verbose, "verbose", "v", false, "copy every node's log to stderr")
	f.StringVar(&c.logLevel, "log-level", "info", "log level of the demo and the balancer: debug, info, warn or error")
	return cmd
}

// strategyList is the strategies with their summaries, for --help.
func strategyList() string {
	var b strings.Builder
	for _, s := range launch.Strategies() {
		def := ""
		if s.Name == launch.DefaultStrategy {
			def = " (default)"
		}
		fmt.Fprintf(&b, "  %-15s %s%s\n", s.Name, s.Summary, def)
	}
	return b.String()
}

// runDemo runs the demo until ctx ends, then stops everything it started.
// It returns an error when a flag is invalid, an address is taken, or the
// nodes do not start; the error says what to do instead.
func runDemo(ctx context.Context, c demoConfig, stdout, stderr io.Writer) error {
	began := time.Now()
	logger, err := newLogger(stderr, "text", c.logLevel)
	if err != nil {
		return err
	}
	st, err := launch.Lookup(c.strategy)
	if err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	if err := checkLoopback(c.admin); err != nil {
		return fmt.Errorf("--admin %s: %w: the dashboard can kill processes, so it listens on loopback only", c.admin, err)
	}
	if c.logDir != "" {
		if err := os.MkdirAll(c.logDir, 0o755); err != nil {
			return fmt.Errorf("--log-dir: %w", err)
		}
	}

	// Take the addresses first: a port in use is better reported before
	// any node starts.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w (pass --listen 127.0.0.1:0 for any free port)", err)
	}
	defer ln.Close()
	aln, err := lc.Listen(ctx, "tcp", c.admin)
	if err != nil {
		return fmt.Errorf("--admin: %w (pass --admin 127.0.0.1:0 for any free port)", err)
	}
	defer aln.Close()

	opts := launch.Options{
		Strategy: st.Name,
		Nodes:    c.nodes,
		StoreURL: c.storeURL,
		LogDir:   c.logDir,
		Logger:   logger.With("component", "launch"),
	}
	if c.verbose {
		opts.Output = stderr
	}
	cluster, err := launch.New(opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "roam demo: strategy %s: store %s, balancer policy %s\n", st.Name, st.Store, st.Policy)
	fmt.Fprintf(stdout, "roam demo: starting %d nodes…\n", c.nodes)
	if err := cluster.Start(ctx); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "roam demo: interrupted while starting; everything started is stopped")
			return nil
		}
		return explainStartError(st, err)
	}
	// From here on, every exit path stops the nodes.
	stopped := false
	stopAll := func() error {
		if stopped {
			return nil
		}
		stopped = true
		return stopCluster(cluster, logger)
	}
	defer stopAll()

	bal, err := newDemoBalancer(st, ln, aln, cluster, logger)
	if err != nil {
		return err
	}
	appURL := "http://" + ln.Addr().String()
	store := st.Store
	if st.External() {
		store = cluster.StoreSpec() // the server's URL, password redacted
	}
	dash, err := dashboard.New(dashboard.Config{
		Strategy: dashboard.Strategy{
			Name: st.Name, Store: store, Policy: st.Policy, Holds: st.Holds,
			Server: st.Server, Summary: st.Summary, Trade: st.Trade,
		},
		AppURL:  appURL,
		Nodes:   func() []dashboard.Node { return demoNodes(bal, cluster) },
		Control: &demoControl{lb: bal, cluster: cluster},
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	dash.Register(bal.AdminHandler())
	admin := newDemoAdminServer(bal, aln, c.admin, logger)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	// The balancer serves traffic only; the demo serves its admin mux
	// (see newDemoAdminServer).
	go func() { served <- bal.Serve(runCtx, ln, nil) }()
	adminServed := make(chan error, 1)
	go func() { adminServed <- admin.Serve(aln) }()
	dashDone := make(chan struct{})
	go func() { dash.Run(runCtx); close(dashDone) }()

	for _, n := range cluster.Nodes() {
		fmt.Fprintf(stdout, "roam demo: node %-4s %s (pid %d)\n", n.ID, n.URL, n.PID)
	}
	fmt.Fprintf(stdout, "roam demo: app       %s\n", appURL)
	fmt.Fprintf(stdout, "roam demo: dashboard http://%s\n", aln.Addr())
	fmt.Fprintf(stdout, "roam demo: ready in %.2fs; Ctrl-C stops the balancer and every node\n", time.Since(began).Seconds())

	var serveErr, adminErr error
	adminDone := false
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	case adminErr = <-adminServed:
		adminDone = true
	}
	fmt.Fprintln(stdout, "roam demo: stopping…")
	cancel()
	<-dashDone // ends the dashboard's event streams, which would hold Shutdown up
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	admin.Shutdown(actx)
	acancel()
	admin.Close()
	if !adminDone {
		adminErr = <-adminServed
	}
	if errors.Is(adminErr, http.ErrServerClosed) {
		adminErr = nil
	} else if adminErr != nil {
		adminErr = fmt.Errorf("admin listener: %w", adminErr)
	}
	if serveErr == nil {
		serveErr = <-served
	}
	stopErr := stopAll()
	if stopErr == nil {
		fmt.Fprintln(stdout, "roam demo: stopped the balancer and every node")
	}
	return errors.Join(serveErr, adminErr, stopErr)
}

// newDemoAdminServer returns the server for the admin listener aln: the
// balancer's admin mux, which carries the dashboard and the kill, start
// and add routes, behind adminhost.RequireLocalHost. Those routes refuse
// cross-origin requests, but a DNS-rebinding page is same-origin as far
// as Origin and Host can tell; only the Host header gives it away. The
// demo serves the mux itself because lb.Serve serves it with no way to
// wrap it.
func newDemoAdminServer(bal *lb.LB, aln net.Listener, configured string, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           adminhost.RequireLocalHost(bal.AdminHandler(), aln.Addr().String(), configured),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

// stopCluster stops every node and server gracefully; a second Ctrl-C or
// SIGTERM during the stop kills what is left at once.
func stopCluster(cluster *launch.Cluster, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), demoStopTimeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		select {
		case <-sig:
			logger.Warn("second signal: killing every node now")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := cluster.Stop(ctx); err != nil {
		return fmt.Errorf("stop nodes: %w", err)
	}
	return nil
}

// newDemoBalancer returns the in-process balancer over the cluster's
// nodes, configured for the demo: the strategy's policy, fast health
// checks, a random secret (sticky cookies need not outlive the demo).
func newDemoBalancer(st launch.Strategy, ln, aln net.Listener, cluster *launch.Cluster, logger *slog.Logger) (*lb.LB, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &lb.Config{
		Listen: ln.Addr().String(),
		Admin:  aln.Addr().String(),
		Policy: st.Policy,
		Secret: hex.EncodeToString(secret),
		Health: lb.HealthConfig{
			// Ready, not merely alive: a cluster node joins the rotation
			// once its state transfer is done.
			Path:            "/readyz",
			Interval:        lb.Duration(demoHealthInterval),
			Timeout:         lb.Duration(demoHealthTimeout),
			Rise:            1,
			PassiveCoolDown: lb.Duration(demoCoolDown),
		},
		DrainTimeout: lb.Duration(demoDrainTimeout),
		Logger:       logger,
	}
	for _, n := range cluster.Nodes() {
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{ID: n.ID, URL: n.URL, PID: n.PID})
	}
	bal, err := lb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	return bal, nil
}

// demoNodes merges the balancer's view of each node with the launcher's.
func demoNodes(bal *lb.LB, cluster *launch.Cluster) []dashboard.Node {
	procs := map[string]launch.Node{}
	for _, n := range cluster.Nodes() {
		procs[n.ID] = n
	}
	var out []dashboard.Node
	for _, ns := range bal.Nodes() {
		n := dashboard.Node{
			ID: ns.ID, URL: ns.URL, PID: ns.PID, State: ns.State,
			Requests: ns.Requests, Active: ns.Active, Failures: ns.Failures,
		}
		if p, ok := procs[ns.ID]; ok {
			n.Process, n.Exit = string(p.State), p.Exit
			if p.PID != 0 {
				n.PID = p.PID
			}
		}
		out = append(out, n)
	}
	return out
}

// demoControl carries out the dashboard's buttons: the launcher acts on the
// processes, and the balancer learns about new processes (never about a
// kill: it has to notice a crash by itself, as in production).
type demoControl struct {
	lb      *lb.LB
	cluster *launch.Cluster
}

func (dc *demoControl) Kill(_ context.Context, id string) error {
	return controlError(dc.cluster.Kill(id))
}

func (dc *demoControl) Start(ctx context.Context, id string) error {
	n, err := dc.cluster.StartNode(ctx, id)
	if err != nil {
		return controlError(err)
	}
	if err := dc.lb.SetPID(id, n.PID); err != nil {
		return err
	}
	dc.awaitUp(ctx, id)
	return nil
}

func (dc *demoControl) Add(ctx context.Context) (string, error) {
	n, err := dc.cluster.Add(ctx)
	if err != nil {
		return "", controlError(err)
	}
	if err := dc.lb.AddBackend(lb.BackendConfig{ID: n.ID, URL: n.URL, PID: n.PID}); err != nil {
		return n.ID, fmt.Errorf("balancer: %w", err)
	}
	dc.awaitUp(ctx, n.ID)
	return n.ID, nil
}

// awaitUp waits, briefly, until the balancer's health checks see id up, so
// that the page shows the node serving as soon as the button returns. A
// node that takes longer simply shows up a moment later.
func (dc *demoControl) awaitUp(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, demoUpWait)
	defer cancel()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		for _, b := range dc.lb.Backends() {
			if b.ID() == id && b.State() == lb.StateUp {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// controlError maps the launcher's errors onto the dashboard's, which
// choose the HTTP status.
func controlError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, launch.ErrUnknownNode):
		return fmt.Errorf("%w: %w", dashboard.ErrUnknownNode, err)
	case errors.Is(err, launch.ErrNodeRunning), errors.Is(err, launch.ErrNodeNotRunning), errors.Is(err, launch.ErrClusterStopped):
		return fmt.Errorf("%w: %w", dashboard.ErrConflict, err)
	}
	return err
}

// explainStartError turns a failed start into advice: what went wrong and
// a strategy (or flag) that works.
func explainStartError(st launch.Strategy, err error) error {
	var ne *launch.NodeError
	switch {
	case errors.Is(err, launch.ErrServerMissing):
		return fmt.Errorf("%w\n(or try a strategy that needs no server: roam demo --strategy sticky)", err)
	case st.Holds == launch.HeldByCluster && errors.As(err, &ne) && strings.Contains(ne.Output, errors.ErrUnsupported.Error()):
		return fmt.Errorf("strategy %s needs the %s store, which this build of roam does not include yet.\n"+
			"Try a strategy that works without it: roam demo --strategy sticky (or none, ip-hash)\n(node %s said: %s)",
			st.Name, st.Store, ne.ID, lastLineOf(ne.Output))
	case st.External():
		return fmt.Errorf("strategy %s: %w\n(check --store-url, or try a strategy that needs no server: roam demo --strategy sticky)", st.Name, err)
	}
	return fmt.Errorf("strategy %s: %w\n(try another strategy: roam demo --strategy sticky)", st.Name, err)
}

func lastLineOf(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// checkLoopback returns an error unless addr's host is a loopback address
// or localhost.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("not a loopback address")
}
