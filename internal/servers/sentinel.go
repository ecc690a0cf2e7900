package servers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// SentinelOptions configures StartSentinel. The zero value is ready to use.
type SentinelOptions struct {
	// Binary is redis-server's path; looked up when empty.
	Binary string
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
// sentinels (quorum 2).
type Sentinel struct {
	MasterName    string
	SentinelAddrs []string
	// Master and Replica are the data servers as started; after a failover
	// their roles are swapped, so ask MasterAddr who is master now.
	Master, Replica *Redis
	Sentinels       []*Redis
	DownAfter       time.Duration
}

// sentinelCount and sentinelQuorum: three sentinels, two must agree, so one
// sentinel can be lost and a failover still happens.
const (
	sentinelCount  = 3
	sentinelQuorum = 2
)

// StartSentinel starts a master, a replica of it and three sentinels that
// monitor it, all registered with c, and returns once every sentinel knows
// the replica and the other two sentinels, which is when a failover can
// succeed. That takes about two seconds: sentinels announce themselves
// every 2 s. It fails with a *NotInstalledError when redis-server is
// missing.
func StartSentinel(c Cleaner, o SentinelOptions) (*Sentinel, error) {
	if o.MasterName == "" {
		o.MasterName = "roam"
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 5 * time.Second
	}
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = need("redis-server", "redis-server"); err != nil {
			return nil, err
		}
	}
	master, err := StartRedis(c, RedisOptions{Binary: bin})
	if err != nil {
		return nil, err
	}
	replica, err := StartRedis(c, RedisOptions{Binary: bin, ReplicaOf: master})
	if err != nil {
		return nil, err
	}
	s := &Sentinel{MasterName: o.MasterName, Master: master, Replica: replica, DownAfter: o.DownAfter}
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
		sn, err := startRedisNode(c, cfg)
		if err != nil {
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sn)
		s.SentinelAddrs = append(s.SentinelAddrs, sn.Addr)
	}
	if err := s.waitDiscovered(); err != nil {
		return nil, fmt.Errorf("servers: sentinels did not discover each other and the replica: %w", err)
	}
	return s, nil
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

// MasterAddr asks the running sentinels, in order, for the current master's
// address and returns the first answer. It fails when none answers.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for i, addr := range s.SentinelAddrs {
		if !s.Sentinels[i].Running() {
			continue
		}
		got, err := s.askMaster(ctx, addr)
		if err == nil {
			return got, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("servers: no sentinel named the master: %w", errors.Join(errs...))
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
func (s *Sentinel) Server(addr string) *Redis {
	for _, srv := range []*Redis{s.Master, s.Replica} {
		if srv.Addr == addr {
			return srv
		}
	}
	return nil
}

// KillMaster SIGKILLs the server the sentinels currently name as master and
// returns its address, for WaitFailover.
func (s *Sentinel) KillMaster(ctx context.Context) (string, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	srv := s.Server(addr)
	if srv == nil {
		return "", fmt.Errorf("servers: sentinels name %s as master, which is none of this setup's servers", addr)
	}
	if err := srv.Kill(); err != nil {
		return "", fmt.Errorf("servers: kill %s: %w", addr, err)
	}
	return addr, nil
}

// WaitFailover waits until every running sentinel names the same master,
// other than from, and that server answers ROLE as master; it returns the
// new master's address. Give ctx a deadline: a failover normally takes
// DownAfter plus one to three seconds.
func (s *Sentinel) WaitFailover(ctx context.Context, from string) (string, error) {
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
		return "", fmt.Errorf("servers: no failover away from %s: %w", from, err)
	}
	return newMaster, nil
}
