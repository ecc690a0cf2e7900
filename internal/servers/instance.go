package servers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// Timeouts for one server. Startup deadlines are generous because the
// machine may be shared by parallel test binaries; a healthy start takes
// milliseconds (Redis, Memcached) to about a second (PostgreSQL's initdb).
const (
	fastStartTimeout = 20 * time.Second
	slowStartTimeout = 90 * time.Second
	stopTimeout      = 15 * time.Second
	portAttempts     = 3 // see proc.FreePort: a lost port race is retried on a new port
	failureTailBytes = 8 << 10
)

// errAddrInUse marks a start that failed because another process took the
// port between proc.FreePort and the server's bind.
var errAddrInUse = errors.New("servers: port already in use")

// errExitedEarly is the cancellation cause when a server exits before it
// answers its readiness check.
var errExitedEarly = errors.New("exited before it was ready")

// A Cleaner is where a server registers its teardown: a testing.TB, a
// Group, or anything else with a Cleanup method that runs the functions it
// is given later, last registered first.
type Cleaner interface {
	Cleanup(func())
}

// failureLogger is the part of testing.TB a teardown uses to log a failed
// test's server output, discovered by type assertion so that this package
// does not import testing.
type failureLogger interface {
	Failed() bool
	Logf(format string, args ...any)
}

// Group is a Cleaner for programs: it collects teardowns and runs them, last
// registered first, in Close. The zero value is ready to use; its methods
// are safe for concurrent use.
type Group struct {
	mu sync.Mutex
	fs []func()
}

// Cleanup registers f to run at Close.
func (g *Group) Cleanup(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fs = append(g.fs, f)
}

// Close stops every server started with g and removes their files. It may
// be called more than once.
func (g *Group) Close() {
	g.mu.Lock()
	fs := g.fs
	g.fs = nil
	g.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Instance is one restartable server process: how to start it, how to tell
// it answers, and the process currently running (or last run). Its methods
// are safe for concurrent use.
type Instance struct {
	name         string
	spec         proc.Spec
	ready        func(context.Context) error
	startTimeout time.Duration
	// gracefulCleanup stops rather than kills the server at cleanup, for
	// servers that leave state outside their directory when killed.
	gracefulCleanup bool

	mu sync.Mutex
	p  *proc.Process
}

// Name describes the server, as "redis 127.0.0.1:6379".
func (in *Instance) Name() string { return in.name }

// start launches the process and waits until ready succeeds. A process that
// dies first fails the start at once, with its output; one that bound a port
// someone else holds fails with errAddrInUse.
func (in *Instance) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.p != nil {
		select {
		case <-in.p.Exited():
		default:
			return fmt.Errorf("servers: %s is already running", in.name)
		}
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), in.startTimeout,
		fmt.Errorf("no answer within %v", in.startTimeout))
	defer cancel()

	p, err := proc.Start(context.Background(), in.spec)
	if err != nil {
		return fmt.Errorf("servers: start %s: %w", in.name, err)
	}
	readyCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-p.Exited():
			stop(errExitedEarly)
		case <-readyCtx.Done():
		}
	}()
	if err := proc.Poll(readyCtx, in.ready); err != nil {
		cause := context.Cause(readyCtx)
		_ = p.Kill()
		out := p.Output()
		if errors.Is(cause, errExitedEarly) && strings.Contains(out, "ddress already in use") {
			return fmt.Errorf("%w: %s: %s", errAddrInUse, in.name, lastLine(out))
		}
		return fmt.Errorf("servers: %s: %v (%w)\n--- %s output (tail) ---\n%s", in.name, cause, err, in.name, tail(out, failureTailBytes))
	}
	in.p = p
	return nil
}

// Kill sends SIGKILL to the server and its process group (a crash) and
// waits until it is reaped. Killing a stopped server is not an error.
func (in *Instance) Kill() error {
	p := in.Proc()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Stop shuts the server down with its polite signal, killing it after 15 s;
// it then returns an error wrapping proc.ErrStopTimedOut.
func (in *Instance) Stop() error {
	p := in.Proc()
	if p == nil {
		return nil
	}
	return p.Stop(stopTimeout)
}

// Restart stops the server if it runs, then starts it with the same
// configuration (same port, same data directory) and waits until it
// answers.
func (in *Instance) Restart() error {
	if err := in.Stop(); err != nil && !errors.Is(err, proc.ErrStopTimedOut) {
		return err
	}
	return in.start()
}

// Proc returns the current (or last) server process, for Freeze and Thaw.
func (in *Instance) Proc() *proc.Process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p
}

// Running reports whether the server process is alive.
func (in *Instance) Running() bool {
	p := in.Proc()
	if p == nil {
		return false
	}
	select {
	case <-p.Exited():
		return false
	default:
		return true
	}
}

// Output returns the tail of the server's output, for error messages.
func (in *Instance) Output() string {
	if p := in.Proc(); p != nil {
		return tail(p.Output(), failureTailBytes)
	}
	return ""
}

// register makes c kill the server at cleanup and, when c is a test that
// failed, log the server's last output first.
func (in *Instance) register(c Cleaner) {
	c.Cleanup(func() {
		if t, ok := c.(failureLogger); ok && t.Failed() {
			if p := in.Proc(); p != nil {
				t.Logf("%s output (tail):\n%s", in.name, tail(p.Output(), failureTailBytes))
			}
		}
		if in.gracefulCleanup {
			_ = in.Stop()
			return
		}
		_ = in.Kill()
	})
}

// withPortRetry calls try up to portAttempts times while it fails with
// errAddrInUse; try picks fresh ports on each call.
func withPortRetry(try func() error) error {
	var err error
	for range portAttempts {
		if err = try(); !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

// tempDir makes a short-named directory under os.TempDir and registers its
// removal with c. Short, because unix socket paths are limited to about 107
// bytes; under os.TempDir rather than a test's own directory, because that
// one is mode 0700 and a server that runs as an unprivileged user
// (PostgreSQL under root) could not reach into it. Registered before the
// server's own cleanup, it runs after the server is killed.
func tempDir(c Cleaner, prefix string) (string, error) {
	dir, err := os.MkdirTemp("", "roam-"+prefix+"-")
	if err != nil {
		return "", fmt.Errorf("servers: temp dir: %w", err)
	}
	c.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…\n" + s
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// loopbackHost returns host, or 127.0.0.1 when it is empty.
func loopbackHost(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}
