package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roamsession/roam/internal/proc"
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

	t  testing.TB
	in *instance
}

// Redis starts a redis-server on a free port in a fresh temporary directory,
// waits until it answers PING, and stops it when the test ends. It skips the
// test (fails it under CI) when redis-server is not installed.
func Redis(t testing.TB, opts ...RedisOptions) *RedisServer {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "redis-server", "redis-server")
	cfg := redisNodeConfig{bin: bin, name: "redis", host: o.Host}
	cfg.conf = func(host string, port, _ int) []string {
		lines := redisBaseConf(host, port, o.AppendOnly)
		if o.ReplicaOf != nil {
			lines = append(lines, fmt.Sprintf("replicaof %s %d", o.ReplicaOf.Host, o.ReplicaOf.Port))
		}
		return append(lines, o.Config...)
	}
	s, err := startRedisNode(t, cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.t = t
	if o.ReplicaOf != nil {
		if err := waitReplicaSynced(s.Addr); err != nil {
			t.Fatalf("testserver: replica %s of %s: %v", s.Addr, o.ReplicaOf.Addr, err)
		}
	}
	return s
}

// Kill sends SIGKILL to the server: a crash. Data written since the last
// save is lost unless AppendOnly is set.
func (s *RedisServer) Kill() {
	s.t.Helper()
	if err := s.in.kill(); err != nil {
		s.t.Fatalf("testserver: kill %s: %v", s.Addr, err)
	}
}

// Stop shuts the server down with SIGTERM; it saves its data first
// (shutdown-on-sigterm save), so a later Restart finds it.
func (s *RedisServer) Stop() {
	s.t.Helper()
	if err := s.in.stop(); err != nil {
		s.t.Fatalf("testserver: stop %s: %v", s.Addr, err)
	}
}

// Restart stops the server if it is running and starts it again on the same
// port with the same directory and configuration, waiting until it answers.
func (s *RedisServer) Restart() {
	s.t.Helper()
	if err := s.in.restart(); err != nil {
		s.t.Fatalf("testserver: restart %s: %v", s.Addr, err)
	}
}

// Running reports whether the server process is alive.
func (s *RedisServer) Running() bool { return s.in.running() }

// Proc returns the current server process, for Freeze and Thaw.
func (s *RedisServer) Proc() *proc.Process { return s.in.current() }

// redisNodeConfig describes one redis-server process to start.
type redisNodeConfig struct {
	bin, name, host string
	// conf returns the config file's lines for the chosen ports (clusterPort
	// is 0 unless wantClusterPort).
	conf            func(host string, port, clusterPort int) []string
	wantClusterPort bool
	args            []string // after the config file path, e.g. --sentinel
	confName        string   // redis.conf when empty
}

// startRedisNode starts one redis-server in a new temporary directory
// registered with c, retrying on a new port when it loses the port race.
func startRedisNode(c cleaner, cfg redisNodeConfig) (*RedisServer, error) {
	host := loopbackHost(cfg.host)
	dir, err := tempDir(c, cfg.name)
	if err != nil {
		return nil, err
	}
	confName := cfg.confName
	if confName == "" {
		confName = "redis.conf"
	}
	confPath := filepath.Join(dir, confName)
	var s *RedisServer
	err = withPortRetry(func() error {
		n := 1
		if cfg.wantClusterPort {
			n = 2
		}
		ports, err := proc.FreePorts(host, n)
		if err != nil {
			return err
		}
		clusterPort := 0
		if cfg.wantClusterPort {
			clusterPort = ports[1]
		}
		conf := cfg.conf(host, ports[0], clusterPort)
		if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			return fmt.Errorf("testserver: write %s: %w", confPath, err)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(ports[0]))
		in := &instance{
			name: fmt.Sprintf("%s %s", cfg.name, addr),
			spec: proc.Spec{
				Name: cfg.name,
				Path: cfg.bin,
				Args: append([]string{confPath}, cfg.args...),
				Dir:  dir,
			},
			ready:        func(ctx context.Context) error { return redisPing(ctx, addr) },
			startTimeout: fastStartTimeout,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &RedisServer{Addr: addr, Host: host, Port: ports[0], Dir: dir, in: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.in.register(c)
	return s, nil
}

// redisBaseConf is the configuration every data server gets: loopback
// only, no background saves (they cost CPU the tests need), a save on
// SIGTERM so Stop and Restart keep the data, immediate replica syncs, and
// optionally an fsync'd AOF.
func redisBaseConf(host string, port int, appendOnly bool) []string {
	lines := []string{
		"bind " + host,
		"port " + strconv.Itoa(port),
		"protected-mode no",
		"daemonize no",
		`logfile ""`,
		`save ""`,
		"shutdown-on-sigterm save",
		// Replicas sync at once instead of after the default 5 s wait for
		// more replicas to share one transfer.
		"repl-diskless-sync-delay 0",
	}
	if appendOnly {
		return append(lines, "appendonly yes", "appendfsync always")
	}
	return append(lines, "appendonly no")
}

// waitReplicaSynced waits until the replica at addr reports its link to its
// master up, which Redis reports once the initial sync has loaded.
func waitReplicaSynced(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), fastStartTimeout)
	defer cancel()
	return proc.Poll(ctx, func(ctx context.Context) error {
		info, err := respInfo(ctx, addr, "INFO", "replication")
		if err != nil {
			return err
		}
		if got := info["master_link_status"]; got != "up" {
			return fmt.Errorf("master_link_status %q, want up", got)
		}
		return nil
	})
}
