package lb

import (
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is a backend's state as the admin API and metrics show it.
type State int32

const (
	// StateUp: passing health checks and taking new clients.
	StateUp State = iota
	// StateDown: failing active checks, or ejected after consecutive
	// failed requests; it gets no traffic.
	StateDown
	// StateDraining: alive but taking no new clients; clients pinned to
	// it keep reaching it until the drain timeout.
	StateDraining
)

// String returns "up", "down" or "draining".
func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateDraining:
		return "draining"
	}
	return "unknown"
}

// Backend is one server behind the balancer. Its health, load and counters
// are atomics read on every request, so it is always used by pointer. A
// Backend belongs to one LB; the LB creates it from a BackendConfig.
type Backend struct {
	id     string
	url    *url.URL
	host   string // url.Host, the dial target
	scheme string
	prefix string // url.Path without trailing slash, prepended to request paths

	pid atomic.Int64

	checkUp      atomic.Bool  // verdict of the active checks
	ejectedUntil atomic.Int64 // unix nanoseconds; passive ejection
	draining     atomic.Bool
	drainUntil   atomic.Int64 // unix nanoseconds
	removed      atomic.Bool  // no longer in the pool: never picked again
	consecFails  atomic.Int32 // consecutive failed proxied attempts

	active   atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	codes    [600]atomic.Uint64
	toUp     atomic.Uint64 // health transitions into up
	toDown   atomic.Uint64 // health transitions into down
	lastErr  atomic.Pointer[string]
	checked  atomic.Int64 // unix nanoseconds of the last active check

	latency prometheus.Observer
	conns   connPool // idle connections of the fast upstream client
}

// ID returns the backend's configured id.
func (b *Backend) ID() string { return b.id }

// URL returns the backend's base URL. It must not be modified.
func (b *Backend) URL() *url.URL { return b.url }

// Active returns the number of requests in flight to the backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// State returns the backend's state now.
func (b *Backend) State() State { return b.stateAt(time.Now().UnixNano()) }

func (b *Backend) stateAt(now int64) State {
	if b.removed.Load() || !b.checkUp.Load() {
		return StateDown
	}
	if e := b.ejectedUntil.Load(); e != 0 && now < e {
		return StateDown
	}
	if b.draining.Load() {
		return StateDraining
	}
	return StateUp
}

// available reports whether b may take a new client at now.
func (b *Backend) available(now int64) bool {
	return b.stateAt(now) == StateUp
}

// serving reports whether b may keep serving a client already pinned to it
// at now: up, or draining within its drain timeout.
func (b *Backend) serving(now int64) bool {
	switch b.stateAt(now) {
	case StateUp:
		return true
	case StateDraining:
		return now < b.drainUntil.Load()
	}
	return false
}

// Pool is what a policy picks from for one attempt of one request: the
// backends, which of them this request has already tried, and the time.
// Policies call Available for a new client and Serving for one that is
// already pinned (by a cookie or a hash).
type Pool struct {
	all []*Backend
	rs  *reqState
	now int64
}

// Backends returns every backend in configuration order, whatever its
// state. The slice must not be modified.
func (p Pool) Backends() []*Backend { return p.all }

// Available reports whether b may take a new client: up, not draining,
// and not already tried by this request.
func (p Pool) Available(b *Backend) bool {
	return b.available(p.now) && !p.tried(b)
}

// Serving reports whether b may serve a client pinned to it: up, or
// draining within its drain timeout, and not already tried.
func (p Pool) Serving(b *Backend) bool {
	return b.serving(p.now) && !p.tried(b)
}

func (p Pool) tried(b *Backend) bool {
	if p.rs == nil {
		return false
	}
	for _, t := range p.rs.tried {
		if t == b {
			return true
		}
	}
	return false
}
