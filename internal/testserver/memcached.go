package testserver

import (
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
)

// MemcachedOptions configures Memcached. The zero value is a 64 MiB server
// on 127.0.0.1.
type MemcachedOptions struct {
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// MemoryMB is the cache size (-m); 64 when zero.
	MemoryMB int
	// Args are extra memcached flags, such as "-I", "2m".
	Args []string
}

// MemcachedServer is a running memcached owned by one test. Its methods fail
// the test on error and must be called from the test's goroutine.
type MemcachedServer struct {
	Addr string // host:port
	Host string
	Port int

	h handle
}

// Memcached starts a memcached on a free port, waits until it answers the
// version command, and stops it when the test ends. It skips the test
// (fails it under CI) when memcached is not installed.
func Memcached(t testing.TB, opts ...MemcachedOptions) *MemcachedServer {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "memcached", "memcached")
	s, err := servers.StartMemcached(t, servers.MemcachedOptions{Binary: bin, Host: o.Host, MemoryMB: o.MemoryMB, Args: o.Args})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return &MemcachedServer{Addr: s.Addr, Host: s.Host, Port: s.Port, h: handle{t: t, addr: s.Addr, in: s.Instance}}
}

// MemcachedN starts n independent memcached servers, for clients that shard
// keys over several.
func MemcachedN(t testing.TB, n int, opts ...MemcachedOptions) []*MemcachedServer {
	t.Helper()
	servers := make([]*MemcachedServer, n)
	for i := range servers {
		servers[i] = Memcached(t, opts...)
	}
	return servers
}

// Kill sends SIGKILL to the server. Its contents are gone.
func (s *MemcachedServer) Kill() {
	s.h.t.Helper()
	s.h.kill()
}

// Stop shuts the server down with SIGTERM. Memcached keeps nothing, so its
// contents are gone too.
func (s *MemcachedServer) Stop() {
	s.h.t.Helper()
	s.h.stop()
}

// Restart stops the server if it is running and starts an empty one on the
// same port, waiting until it answers.
func (s *MemcachedServer) Restart() {
	s.h.t.Helper()
	s.h.restart()
}

// Running reports whether the server process is alive.
func (s *MemcachedServer) Running() bool { return s.h.running() }

// Proc returns the current server process, for Freeze and Thaw.
func (s *MemcachedServer) Proc() *proc.Process { return s.h.proc() }
