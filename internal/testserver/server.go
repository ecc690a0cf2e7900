package testserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// Timeouts for one server. Startup deadlines are generous because the
// machine is shared by parallel test binaries; a healthy start takes
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
var errAddrInUse = errors.New("testserver: port already in use")

// errExitedEarly is the cancellation cause when a server exits before it
// answers its readiness check.
var errExitedEarly = errors.New("exited before it was ready")

// cleaner is where a server registers its teardown: a testing.TB for a
// server owned by one test, the shared registry for a shared one.
type cleaner interface {
	Cleanup(func())
}

// instance is one restartable server process: how to start it, how to tell
// it answers, and the process currently running (or last run).
type instance struct {
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

// start launches the process and waits until ready succeeds. A process that
// dies first fails the start at once, with its output; one that bound a port
// someone else holds fails with errAddrInUse.
func (in *instance) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.p != nil {
		select {
		case <-in.p.Exited():
		default:
			return fmt.Errorf("testserver: %s is already running", in.name)
		}
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), in.startTimeout,
		fmt.Errorf("no answer within %v", in.startTimeout))
	defer cancel()

	p, err := proc.Start(context.Background(), in.spec)
	if err != nil {
		return fmt.Errorf("testserver: start %s: %w", in.name, err)
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
		return fmt.Errorf("testserver: %s: %v (%w)\n--- %s output (tail) ---\n%s", in.name, cause, err, in.name, tail(out, failureTailBytes))
	}
	in.p = p
	return nil
}

// kill sends SIGKILL and waits for the process to be reaped.
func (in *instance) kill() error {
	p := in.current()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// stop shuts the server down gracefully, killing it after stopTimeout.
func (in *instance) stop() error {
	p := in.current()
	if p == nil {
		return nil
	}
	return p.Stop(stopTimeout)
}

// restart stops the server if it runs, then starts it with the same
// configuration (same port, same data directory).
func (in *instance) restart() error {
	if err := in.stop(); err != nil && !errors.Is(err, proc.ErrStopTimedOut) {
		return err
	}
	return in.start()
}

func (in *instance) current() *proc.Process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p
}

func (in *instance) running() bool {
	p := in.current()
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

// register makes c kill the server at cleanup and, when c is a test that
// failed, log the server's last output first.
func (in *instance) register(c cleaner) {
	c.Cleanup(func() {
		if t, ok := c.(testing.TB); ok && t.Failed() {
			if p := in.current(); p != nil {
				t.Logf("%s output (tail):\n%s", in.name, tail(p.Output(), failureTailBytes))
			}
		}
		if in.gracefulCleanup {
			_ = in.stop()
			return
		}
		_ = in.kill()
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
// bytes and t.TempDir's names grow with the test's name; outside the test's
// own directory, because that one is mode 0700 and a server that runs as an
// unprivileged user (PostgreSQL under root) could not reach into it.
// Registered before the server's own cleanup, it runs after the server is
// killed.
func tempDir(c cleaner, prefix string) (string, error) {
	dir, err := os.MkdirTemp("", "roam-"+prefix+"-")
	if err != nil {
		return "", fmt.Errorf("testserver: temp dir: %w", err)
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

// oneOption returns the single options value of a variadic options
// parameter, the zero value when none was given, and fails the test when
// more than one was.
func oneOption[T any](t testing.TB, opts []T) T {
	t.Helper()
	var zero T
	switch len(opts) {
	case 0:
		return zero
	case 1:
		return opts[0]
	default:
		t.Fatalf("testserver: pass at most one options value, got %d", len(opts))
		return zero
	}
}

// loopbackHost returns host, or 127.0.0.1 when it is empty.
func loopbackHost(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}
