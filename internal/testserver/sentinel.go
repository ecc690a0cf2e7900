package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
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

	t testing.TB
}

// sentinelCount and sentinelQuorum: three sentinels, two must agree, so one
// sentinel can be lost and a failover still happens.
const (
	sentinelCount  = 3
	sentinelQuorum = 2
)

// RedisSentinel starts a master, a replica of it and three sentinels that
// monitor it, and returns once every sentinel knows the replica and the
// other two sentinels, which is when a failover can succeed. That takes
// about two seconds: sentinels announce themselves every 2 s. Everything is
// stopped when the test ends. It skips the test (fails it under CI) when
// redis-server is not installed.
func RedisSentinel(t testing.TB, opts ...SentinelOptions) *Sentinel {
	t.Helper()
	o := oneOption(t, opts)
	if o.MasterName == "" {
		o.MasterName = "roam"
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 5 * time.Second
	}
	bin := Require(t, "redis-server", "redis-server")

	master := Redis(t)
	replica := Redis(t, RedisOptions{ReplicaOf: master})
	s := &Sentinel{
		MasterName: o.MasterName,
		Master:     master,
		Replica:    replica,
		DownAfter:  o.DownAfter,
		t:          t,
	}
	for range sentinelCount {
		cfg := redisNodeConfig{
			bin:      bin,
			name:     "sentinel",
			host:     master.Host,
			args:     []string{"--sentinel"},
			confName: "sentinel.conf",
			conf: func(host string, port, _ int) []string {
				return []string{
					"bind " + host,
					"port " + strconv.Itoa(port),
					"protected-mode no",
					"daemonize no",
					`logfile ""`,
					fmt.Sprintf("sentinel monitor %s %s %d %d", o.MasterName, master.Host, master.Port, sentinelQuorum),
					fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.MasterName, o.DownAfter.Milliseconds()),
					fmt.Sprintf("sentinel failover-timeout %s %d", o.MasterName, o.FailoverTimeout.Milliseconds()),
					fmt.Sprintf("sentinel parallel-syncs %s 1", o.MasterName),
				}
			},
		}
		sn, err := startRedisNode(t, cfg)
		if err != nil {
			t.Fatalf("%v", err)
		}
		sn.t = t
		s.Sentinels = append(s.Sentinels, sn)
		s.SentinelAddrs = append(s.SentinelAddrs, sn.Addr)
	}
	if err := s.waitDiscovered(); err != nil {
		t.Fatalf("testserver: sentinels did not discover each other and the replica: %v", err)
	}
	return s
}

// waitDiscovered waits until every sentinel sees the master up, one healthy
// replica and the other sentinels.
func (s *Sentinel) waitDiscovered() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return proc.Poll(ctx, func(ctx context.Context) error {
		for _, addr := range s.SentinelAddrs {
			v, err := respDo(ctx, addr, "SENTINEL", "MASTER", s.MasterName)
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			m := respMap(v)
			if m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
				return fmt.Errorf("sentinel %s sees flags=%q replicas=%s other-sentinels=%s", addr, m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
			v, err = respDo(ctx, addr, "SENTINEL", "REPLICAS", s.MasterName)
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			reps, _ := v.([]any)
			if len(reps) != 1 {
				return fmt.Errorf("sentinel %s lists %d replicas", addr, len(reps))
			}
			if r := respMap(reps[0]); r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s sees replica flags=%q link=%q", addr, r["flags"], r["master-link-status"])
			}
		}
		return nil
	})
}

// MasterAddr asks the sentinels, in order, for the current master's address
// and returns the first answer. It fails the test when no sentinel answers.
func (s *Sentinel) MasterAddr() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for i, addr := range s.SentinelAddrs {
		if !s.Sentinels[i].Running() {
			continue
		}
		got, err := s.askMaster(ctx, addr)
		if err == nil {
			return got
		}
		errs = append(errs, err)
	}
	s.t.Fatalf("testserver: no sentinel named the master: %v", errors.Join(errs...))
	return ""
}

func (s *Sentinel) askMaster(ctx context.Context, sentinel string) (string, error) {
	v, err := respDo(ctx, sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sentinel, err)
	}
	arr, _ := v.([]any)
	if len(arr) != 2 {
		return "", fmt.Errorf("sentinel %s: master address reply %v", sentinel, v)
	}
	host, _ := arr[0].(string)
	port, _ := arr[1].(string)
	return net.JoinHostPort(host, port), nil
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
	var newMaster string
	err := proc.Poll(ctx, func(ctx context.Context) error {
		var names []string
		for i, addr := range s.SentinelAddrs {
			if !s.Sentinels[i].Running() {
				continue
			}
			got, err := s.askMaster(ctx, addr)
			if err != nil {
				return err
			}
			names = append(names, got)
		}
		if len(names) == 0 {
			return errors.New("no sentinel is running")
		}
		if names[0] == from || slices.ContainsFunc(names, func(n string) bool { return n != names[0] }) {
			return fmt.Errorf("sentinels name %v (old master %s)", names, from)
		}
		v, err := respDo(ctx, names[0], "ROLE")
		if err != nil {
			return fmt.Errorf("new master %s: %w", names[0], err)
		}
		if arr, _ := v.([]any); len(arr) == 0 || arr[0] != "master" {
			return fmt.Errorf("new master %s answers ROLE %v", names[0], v)
		}
		newMaster = names[0]
		return nil
	})
	if err != nil {
		s.t.Fatalf("testserver: no failover away from %s: %v", from, err)
	}
	return newMaster
}
