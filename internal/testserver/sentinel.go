package testserver

import (
	"context"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/servers"
)

// SentinelOptions configures RedisSentinel. The zero value is ready to use.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor the master under; "roam"
	// when empty.
	MasterName string
	// DownAfter is down-after-milliseconds: how long the master must be
	// unreachable before a sentinel thinks it down. 1 s when zero.
	DownAfter time.Duration
	// FailoverTimeout is the sentinels' failover-timeout. 5 s when zero.
	FailoverTimeout time.Duration
}

// Sentinel is a monitored Redis master with one replica and three
// sentinels (quorum 2), owned by one test. Its methods fail the test on
// error and must be called from the test's goroutine.
type Sentinel struct {
	MasterName    string
	SentinelAddrs []string
	// Master and Replica are the data servers as started; after a failover
	// their roles are swapped, so ask MasterAddr who is master now.
	Master, Replica *RedisServer
	Sentinels       []*RedisServer
	DownAfter       time.Duration

	srv *servers.Sentinel
	t   testing.TB
}

// RedisSentinel starts a master, a replica of it and three sentinels that
// monitor it, and returns once every sentinel knows the replica and the
// other two sentinels, which is when a failover can succeed. That takes
// about two seconds: sentinels announce themselves every 2 s. Everything is
// stopped when the test ends. It skips the test (fails it under CI) when
// redis-server is not installed.
func RedisSentinel(t testing.TB, opts ...SentinelOptions) *Sentinel {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "redis-server", "redis-server")
	srv, err := servers.StartSentinel(t, servers.SentinelOptions{Binary: bin, MasterName: o.MasterName,
		DownAfter: o.DownAfter, FailoverTimeout: o.FailoverTimeout})
	if err != nil {
		t.Fatalf("%v", err)
	}
	s := &Sentinel{
		MasterName:    srv.MasterName,
		SentinelAddrs: srv.SentinelAddrs,
		Master:        wrapRedis(t, srv.Master),
		Replica:       wrapRedis(t, srv.Replica),
		DownAfter:     srv.DownAfter,
		srv:           srv,
		t:             t,
	}
	for _, sn := range srv.Sentinels {
		s.Sentinels = append(s.Sentinels, wrapRedis(t, sn))
	}
	return s
}

// MasterAddr asks the sentinels, in order, for the current master's address
// and returns the first answer. It fails the test when no sentinel answers.
func (s *Sentinel) MasterAddr() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := s.srv.MasterAddr(ctx)
	if err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
	return addr
}

// Server returns the data server (Master or Replica) listening on addr, or
// nil when neither does.
func (s *Sentinel) Server(addr string) *RedisServer {
	for _, srv := range []*RedisServer{s.Master, s.Replica} {
		if srv.Addr == addr {
			return srv
		}
	}
	return nil
}

// KillMaster SIGKILLs the server the sentinels currently name as master and
// returns its address, for WaitFailover.
func (s *Sentinel) KillMaster() string {
	s.t.Helper()
	addr := s.MasterAddr()
	srv := s.Server(addr)
	if srv == nil {
		s.t.Fatalf("testserver: sentinels name %s as master, which is none of this setup's servers", addr)
	}
	srv.Kill()
	return addr
}

// WaitFailover waits until every running sentinel names the same master,
// other than from, and that server answers ROLE as master; it returns the
// new master's address. It fails the test after 30 s (a failover normally
// takes DownAfter plus one to three seconds).
func (s *Sentinel) WaitFailover(from string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, err := s.srv.WaitFailover(ctx, from)
	if err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
	return addr
}
