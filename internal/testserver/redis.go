package testserver

import (
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
)

// RedisOptions configures Redis. The zero value is a standalone server on
// 127.0.0.1 that keeps data in memory only (see RedisServer.Stop for when
// it survives a restart).
type RedisOptions struct {
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// ReplicaOf, when set, starts the server as a replica of that server;
	// Redis returns once the initial sync is done (master_link_status:up).
	ReplicaOf *RedisServer
	// AppendOnly turns on the append-only file with appendfsync always, so
	// every acknowledged write survives Kill.
	AppendOnly bool
	// Config holds extra redis.conf lines, such as "maxmemory 10mb".
	Config []string
}

// RedisServer is a running redis-server (or sentinel) owned by one test.
// Its methods fail the test on error and must be called from the test's
// goroutine.
type RedisServer struct {
	Addr string // host:port
	Host string
	Port int
	Dir  string // the working directory: redis.conf, dump.rdb, nodes.conf

	srv *servers.Redis
	h   handle
}

func wrapRedis(t testing.TB, s *servers.Redis) *RedisServer {
	return &RedisServer{Addr: s.Addr, Host: s.Host, Port: s.Port, Dir: s.Dir, srv: s,
		h: handle{t: t, addr: s.Addr, in: s.Instance}}
}

// Redis starts a redis-server on a free port in a fresh temporary directory,
// waits until it answers PING, and stops it when the test ends. It skips the
// test (fails it under CI) when redis-server is not installed.
func Redis(t testing.TB, opts ...RedisOptions) *RedisServer {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "redis-server", "redis-server")
	so := servers.RedisOptions{Binary: bin, Host: o.Host, AppendOnly: o.AppendOnly, Config: o.Config}
	if o.ReplicaOf != nil {
		so.ReplicaOf = o.ReplicaOf.srv
	}
	s, err := servers.StartRedis(t, so)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return wrapRedis(t, s)
}

// Kill sends SIGKILL to the server: a crash. Data written since the last
// save is lost unless AppendOnly is set.
func (s *RedisServer) Kill() {
	s.h.t.Helper()
	s.h.kill()
}

// Stop shuts the server down with SIGTERM; it saves its data first
// (shutdown-on-sigterm save), so a later Restart finds it.
func (s *RedisServer) Stop() {
	s.h.t.Helper()
	s.h.stop()
}

// Restart stops the server if it is running and starts it again on the same
// port with the same directory and configuration, waiting until it answers.
func (s *RedisServer) Restart() {
	s.h.t.Helper()
	s.h.restart()
}

// Running reports whether the server process is alive.
func (s *RedisServer) Running() bool { return s.h.running() }

// Proc returns the current server process, for Freeze and Thaw.
func (s *RedisServer) Proc() *proc.Process { return s.h.proc() }
