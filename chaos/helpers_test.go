package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testbin"
)

// Environment of the suite.
const (
	// envMode "long" runs the long suite (make chaos).
	envMode = "ROAM_CHAOS"
	// envSeed replays a schedule.
	envSeed = "ROAM_CHAOS_SEED"
	// envStrategies lists the strategies of the long suite.
	envStrategies = "ROAM_CHAOS_STRATEGIES"
	// envDuration overrides how long the faults go on, per strategy.
	envDuration = "ROAM_CHAOS_DURATION"
	// envFaults narrows the fault kinds of a schedule (kill,freeze,…), to
	// chase one kind of failure.
	envFaults = "ROAM_CHAOS_FAULTS"
	// envLogDir keeps the nodes' logs there instead of in a temporary
	// directory removed after a passing test.
	envLogDir = "ROAM_CHAOS_LOGDIR"
	// envLogLevel sets the nodes' --log-level (debug shows every
	// forward, fetch and push, to trace a violation by its fingerprint).
	envLogLevel = "ROAM_CHAOS_LOG_LEVEL"
)

func TestMain(m *testing.M) {
	code := testbin.Run(m)
	stopShared()
	os.Exit(code)
}

// buildRoam returns the roam binary (internal/testbin builds it once, or
// takes $ROAM_BINARY); -short skips the calling test.
func buildRoam(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos: real processes; skipped with -short")
	}
	return testbin.Roam(t)
}

func longMode() bool { return os.Getenv(envMode) == "long" }

// seed returns ROAM_CHAOS_SEED, or a random seed, and logs it so that a
// failure can be replayed.
func seed(t *testing.T) uint64 {
	t.Helper()
	s := rand.Uint64N(1 << 32)
	if v := os.Getenv(envSeed); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		s = n
	}
	t.Logf("seed %d (replay: %s=%d)", s, envSeed, s)
	// Printed on stderr too, so that it shows even when the test binary
	// is killed by its timeout before the log is flushed.
	fmt.Fprintf(os.Stderr, "chaos: %s seed %d\n", t.Name(), s)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay this run with: %s=%d %s=long go test -run '^%s$' ./chaos", envSeed, s, envMode, strings.SplitN(t.Name(), "/", 2)[0])
		}
	})
	return s
}

// testLogger logs warnings and errors to the test, and everything into
// file when given.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logDir returns where the nodes of t log: ROAM_CHAOS_LOGDIR/<test>, or a
// temporary directory kept (and named) only when the test fails.
func logDir(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if d := os.Getenv(envLogDir); d != "" {
		dir := filepath.Join(d, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "roam-chaos-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// startCluster starts a cluster for t and stops it when t ends.
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	opts.Binary = buildRoam(t)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.LogDir == "" {
		opts.LogDir = logDir(t)
	}
	c, err := NewCluster(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Logf("stop cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// shared is a three-node backup cluster on 127.0.0.1 that the security
// tests share (each starts its own users), started on first use and
// stopped by TestMain.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

func sharedCluster(t *testing.T) *Cluster {
	t.Helper()
	bin := buildRoam(t)
	shared.once.Do(func() {
		c, err := NewCluster(Options{Strategy: "backup", Binary: bin, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			shared.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := c.Start(ctx); err != nil {
			shared.err = err
			_ = c.Stop(context.Background())
			return
		}
		shared.c = c
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

func stopShared() {
	if shared.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = shared.c.Stop(ctx)
	}
}
