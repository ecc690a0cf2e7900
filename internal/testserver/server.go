package testserver

import (
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
)

// The servers themselves are started by internal/servers, which `roam demo`
// and `roam bench` use too; this package turns its errors into test
// failures and skips, and owns what only tests need (CI, shared servers).

// cleaner is where a server registers its teardown: a testing.TB for a
// server owned by one test, the shared registry for a shared one.
type cleaner = servers.Cleaner

// handle is the part of every server handle that acts on its process. Its
// methods fail the test on error and must be called from the test's
// goroutine.
type handle struct {
	t    testing.TB
	addr string
	in   *servers.Instance
}

func (h *handle) kill() {
	h.t.Helper()
	if err := h.in.Kill(); err != nil {
		h.t.Fatalf("testserver: kill %s: %v", h.addr, err)
	}
}

func (h *handle) stop() {
	h.t.Helper()
	if err := h.in.Stop(); err != nil {
		h.t.Fatalf("testserver: stop %s: %v", h.addr, err)
	}
}

func (h *handle) restart() {
	h.t.Helper()
	if err := h.in.Restart(); err != nil {
		h.t.Fatalf("testserver: restart %s: %v", h.addr, err)
	}
}

func (h *handle) running() bool { return h.in.Running() }

func (h *handle) proc() *proc.Process { return h.in.Proc() }

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
