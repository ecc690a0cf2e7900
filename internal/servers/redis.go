package servers

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/roamsession/roam/internal/proc"
)

// RedisOptions configures StartRedis. The zero value is a standalone server
// on 127.0.0.1 that keeps data in memory only (see Redis.Stop for when it
// survives a restart).
type RedisOptions struct {
	// Binary is redis-server's path; looked up (LookBinary) when empty.
	Binary string
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// ReplicaOf, when set, starts the server as a replica of that server;
	// StartRedis returns once the initial sync is done
	// (master_link_status:up).
	ReplicaOf *Redis
	// AppendOnly turns on the append-only file with appendfsync always, so
	// every acknowledged write survives Kill.
	AppendOnly bool
	// Config holds extra redis.conf lines, such as "maxmemory 10mb".
	Config []string
}

// Redis is a running redis-server (or sentinel). Kill is a crash: data
// written since the last save is lost unless AppendOnly is set. Stop
// (SIGTERM) saves first (shutdown-on-sigterm save), so a later Restart finds
// the data.
type Redis struct {
	Addr string // host:port
	Host string
	Port int
	Dir  string // the working directory: redis.conf, dump.rdb, nodes.conf

	*Instance
}

// StartRedis starts a redis-server on a free port in a fresh temporary
// directory registered with c, and returns once it answers PING. It fails
// with a *NotInstalledError when redis-server is missing.
func StartRedis(c Cleaner, o RedisOptions) (*Redis, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = need("redis-server", "redis-server"); err != nil {
			return nil, err
		}
	}
	cfg := redisNodeConfig{bin: bin, name: "redis", host: o.Host}
	cfg.conf = func(host string, port, _ int) []string {
		lines := redisBaseConf(host, port, o.AppendOnly)
		if o.ReplicaOf != nil {
			lines = append(lines, fmt.Sprintf("replicaof %s %d", o.ReplicaOf.Host, o.ReplicaOf.Port))
		}
		return append(lines, o.Config...)
	}
	s, err := startRedisNode(c, cfg)
	if err != nil {
		return nil, err
	}
	if o.ReplicaOf != nil {
		if err := waitReplicaSynced(s.Addr); err != nil {
			return nil, fmt.Errorf("servers: replica %s of %s: %w", s.Addr, o.ReplicaOf.Addr, err)
		}
	}
	return s, nil
}

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
func startRedisNode(c Cleaner, cfg redisNodeConfig) (*Redis, error) {
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
	var s *Redis
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
			return fmt.Errorf("servers: write %s: %w", confPath, err)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(ports[0]))
		in := &Instance{
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
		s = &Redis{Addr: addr, Host: host, Port: ports[0], Dir: dir, Instance: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.register(c)
	return s, nil
}

// redisBaseConf is the configuration every data server gets: loopback
// only, no background saves (they cost CPU), a save on SIGTERM so Stop and
// Restart keep the data, immediate replica syncs, and optionally an fsync'd
// AOF.
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
