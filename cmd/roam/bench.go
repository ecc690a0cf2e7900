package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roamsession/roam/bench"
	"github.com/roamsession/roam/internal/launch"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

// benchConfig is the parsed command line of `roam bench`.
type benchConfig struct {
	strategy       string
	strategies     []string
	nodes          string
	users          int
	duration       time.Duration
	think          time.Duration
	writeRatio     float64
	kills          []string
	restarts       []string
	rollingRestart string
	addNode        string
	killStore      string
	storeDown      time.Duration
	sessions       int
	seed           uint64
	matrix         bool
	json           bool
	out            string
	storeURLs      []string
	logDir         string
	logLevel       string
	binary         string
}

func newBenchCmd() *cobra.Command {
	var c benchConfig
	cmd := &cobra.Command{
		Use:   "bench --strategy S --nodes N --users U --duration D",
		Short: "Measure strategies side by side under real load and real faults",
		Long: `Start N app nodes (separate processes), the balancer and any store server
for a strategy, through the same launcher as roam demo; drive U virtual users
that log in, then read (GET /api/me) and write (POST /api/counter) with think
time, each with its own cookie jar and its own client address in 127.1.0.0/16;
inject faults on schedule; stop everything; print what happened.

Every session request is judged: kept (200, same user, every acknowledged
increment visible), logged out (401: the user logs in again) or stale (the
session survived but lost acknowledged increments). See docs/benchmarks.md.

Faults take a time from the start of the load, as a duration or a percentage:
  --kill n2@10s            SIGKILL node n2 ten seconds in (n2 alone: halfway)
  --restart n2@15s         restart n2 (graceful if it runs, a start if killed)
  --rolling-restart 50%    drain and restart every node in turn, halfway
  --add-node 5s            start one more node and add it to the balancer
  --kill-store 10s         SIGKILL the store server (its primary), restarted
                           --store-down later

--matrix runs every strategy (or --strategies) under the same workload and
faults, at each of --nodes (a list: 3,5 or 2-6), and prints one table;
--out DIR writes report.md, results.json and PNG/SVG charts there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr(), os.Args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.strategy, "strategy", launch.DefaultStrategy, strings.Join(launch.StrategyNames(), " | "))
	f.StringSliceVar(&c.strategies, "strategies", nil, "with --matrix: the strategies to run, comma-separated (default: all)")
	f.StringVar(&c.nodes, "nodes", "3", "app nodes; a list (3,5) or range (2-6) runs each size")
	f.IntVar(&c.users, "users", bench.DefaultUsers, "virtual users")
	f.DurationVar(&c.duration, "duration", bench.DefaultDuration, "length of the load")
	f.DurationVar(&c.think, "think", bench.DefaultThink, "mean think time between a user's requests (0: none)")
	f.Float64Var(&c.writeRatio, "write-ratio", bench.DefaultWriteRatio, "fraction of session requests that increment the counter")
	f.StringArrayVar(&c.kills, "kill", nil, "SIGKILL a node: ID@T (repeatable)")
	f.StringArrayVar(&c.restarts, "restart", nil, "restart a node: ID@T (repeatable)")
	f.StringVar(&c.rollingRestart, "rolling-restart", "", "restart every node in turn at T")
	f.StringVar(&c.addNode, "add-node", "", "add a node at T")
	f.StringVar(&c.killStore, "kill-store", "", "SIGKILL the store server at T")
	f.DurationVar(&c.storeDown, "store-down", bench.DefaultStoreDowntime, "how long a killed store stays down before it is started again (negative: never)")
	f.IntVar(&c.sessions, "sessions", 0, "idle sessions to create before the load (shows what holding sessions costs in memory)")
	f.Uint64Var(&c.seed, "seed", 0, "seed for the users' random choices (0: random)")
	f.BoolVar(&c.matrix, "matrix", false, "run every strategy under the same workload and faults")
	f.BoolVar(&c.json, "json", false, "print one JSON object per run instead of the table")
	f.StringVar(&c.out, "out", "", "write report.md, results.json and charts to this directory")
	f.StringArrayVar(&c.storeURLs, "store-url", nil, "use this store for a strategy instead of starting one: STRATEGY=URL (repeatable)")
	f.StringVar(&c.logDir, "log-dir", "", "write each node's output to DIR/STRATEGY-nN/ID.log")
	f.StringVar(&c.binary, "binary", "", "roam executable the nodes run (default: this one)")
	f.StringVar(&c.logLevel, "log-level", "error", "level of the launcher's and balancer's logs on stderr (debug, info, warn, error)")
	return cmd
}

// benchFaults turns the fault flags into a schedule.
func benchFaults(c benchConfig) ([]bench.Fault, error) {
	var out []bench.Fault
	add := func(kind bench.FaultKind, spec string) error {
		if spec == "" {
			return nil
		}
		f, err := bench.ParseFault(kind, spec)
		if err != nil {
			return fmt.Errorf("--%s: %w", kind, err)
		}
		out = append(out, f)
		return nil
	}
	for _, s := range c.kills {
		if err := add(bench.FaultKill, s); err != nil {
			return nil, err
		}
	}
	for _, s := range c.restarts {
		if err := add(bench.FaultRestart, s); err != nil {
			return nil, err
		}
	}
	for _, kv := range []struct {
		kind bench.FaultKind
		spec string
	}{{bench.FaultRollingRestart, c.rollingRestart}, {bench.FaultAddNode, c.addNode}, {bench.FaultKillStore, c.killStore}} {
		if err := add(kv.kind, kv.spec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func runBench(ctx context.Context, c benchConfig, stdout, stderr io.Writer, argv []string) error {
	level := slog.LevelError
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if c.users < 1 {
		return fmt.Errorf("--users %d: want at least 1", c.users)
	}
	if c.duration <= 0 {
		return fmt.Errorf("--duration %v: want a positive duration", c.duration)
	}
	faults, err := benchFaults(c)
	if err != nil {
		return err
	}
	counts, err := bench.ParseNodeCounts(c.nodes)
	if err != nil {
		return fmt.Errorf("--nodes: %w", err)
	}
	urls := map[string]string{}
	for _, kv := range c.storeURLs {
		s, u, ok := strings.Cut(kv, "=")
		if !ok || s == "" || u == "" {
			return fmt.Errorf("--store-url %q: want STRATEGY=URL, like redis=redis://127.0.0.1:6379", kv)
		}
		urls[s] = u
	}
	strategies := []string{c.strategy}
	if c.matrix {
		strategies = c.strategies
	} else if len(c.strategies) > 0 {
		return errors.New("--strategies goes with --matrix; use --strategy for one run")
	}
	for _, s := range strategies {
		if _, err := launch.Lookup(s); err != nil {
			return err
		}
	}
	think := c.think
	if think == 0 {
		think = -1 // the flag's 0 means none; the library's means its default
	}
	wr := c.writeRatio
	if wr == 0 {
		wr = -1
	}
	pp := bench.NewProgressPrinter(stderr)
	defer pp.Done()
	mo := bench.MatrixOptions{
		Options: bench.Options{
			Users: c.users, Duration: c.duration, Think: think, WriteRatio: wr,
			Faults: faults, StoreDowntime: c.storeDown, Sessions: c.sessions, Seed: c.seed,
			Launcher: bench.ProcessLauncher{Binary: c.binary, StoreURLs: urls, LogDir: c.logDir, Logger: logger},
			Progress: pp.Update,
			Logger:   logger,
		},
		Strategies: strategies,
		NodeCounts: counts,
		OnStart: func(i, total int, _ string, _ int) {
			if total > 1 {
				pp.SetPrefix(fmt.Sprintf("[%d/%d] ", i+1, total))
			}
		},
		OnResult: func(_, _ int, r *bench.Result) {
			pp.Done()
			if c.json {
				fmt.Fprintf(stdout, "%s\n", r.JSON())
			}
		},
	}
	started := time.Now()
	results, err := bench.Matrix(ctx, mo)
	pp.Done()
	if err != nil && len(results) == 0 {
		return err
	}
	single := len(strategies) == 1 && len(counts) == 1
	if single && err == nil && results[0].Error != "" {
		return errors.New(results[0].Error)
	}
	if !c.json {
		if werr := bench.WriteTable(stdout, results); werr != nil {
			return werr
		}
	}
	if c.out != "" && len(results) > 0 {
		info := bench.ReportInfo{
			Command: commandLine(argv), Started: started, Took: time.Since(started),
			Machine: fmt.Sprintf("%d cores, %s/%s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH),
		}
		if werr := bench.WriteReport(c.out, results, info); werr != nil {
			return werr
		}
		fmt.Fprintf(stderr, "report written to %s/report.md\n", c.out)
	}
	if err != nil {
		return err // interrupted: what ran is printed above
	}
	return nil
}

// commandLine returns argv as a shell would read it back, the program
// shown as "roam".
func commandLine(argv []string) string {
	if len(argv) == 0 {
		return "roam bench"
	}
	parts := []string{"roam"}
	for _, a := range argv[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
