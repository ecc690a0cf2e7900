package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/roamsession/roam/internal/servers"
)

// ErrServerMissing is returned (wrapped) by Start when the strategy needs
// an external server, Options.StoreURL is empty, and the server's binary
// is not installed. The message names the Debian package and the flag.
var ErrServerMissing = errors.New("launch: store server not installed")

// serverKind describes what a StoreURL for one kind of server looks like.
// Which binaries and packages a local server needs is internal/servers'
// business.
type serverKind struct {
	schemes []string // accepted StoreURL schemes
	example string   // a StoreURL to show in messages
}

var serverKinds = map[string]serverKind{
	"redis":          {schemes: []string{"redis", "rediss"}, example: "redis://127.0.0.1:6379"},
	"redis-sentinel": {schemes: []string{"redis-sentinel"}, example: "redis-sentinel://127.0.0.1:26379/mymaster"},
	"redis-cluster":  {schemes: []string{"redis-cluster"}, example: "redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"},
	"memcached":      {schemes: []string{"memcached"}, example: "memcached://127.0.0.1:11211"},
	"postgres":       {schemes: []string{"postgres", "postgresql"}, example: "postgres://roam@127.0.0.1:5432/roam?sslmode=disable"},
	"mysql":          {schemes: []string{"mysql"}, example: "mysql://roam:secret@127.0.0.1:3306/roam"},
}

// checkStoreURL rejects a StoreURL whose scheme does not fit the strategy.
func checkStoreURL(st Strategy, url string) error {
	k := serverKinds[st.Server]
	scheme, _, ok := strings.Cut(url, "://")
	if ok {
		for _, s := range k.schemes {
			if scheme == s {
				return nil
			}
		}
	}
	return fmt.Errorf("launch: strategy %s wants a store URL like %s, not %q", st.Name, k.example, redact(url))
}

// server is an external store server Start runs for the nodes.
type server struct {
	spec  string // what the nodes' --store gets
	group *servers.Group
	// kill crashes the server (a replicated store's current primary) and
	// revive starts what kill crashed again, same port and files; both
	// are serialised by Cluster.serverMu.
	kill, revive func(ctx context.Context) error
}

// failoverWait bounds how long KillServer waits for Sentinel to promote
// the dead master's replica (its down-after time plus a few seconds).
const failoverWait = 30 * time.Second

// instanceFaults returns kill and revive for a single server process.
func instanceFaults(in *servers.Instance) (kill, revive func(context.Context) error) {
	return func(context.Context) error { return in.Kill() }, func(context.Context) error { return in.Restart() }
}

// stop stops the server's processes and removes their files. Closing a
// Group takes no context: each server's stop is bounded by servers itself
// (15 s, then SIGKILL).
func (s *server) stop(context.Context) error {
	s.group.Close()
	return nil
}

// startServer runs the server st needs, the same way the tests get theirs
// (internal/servers: free loopback ports, a temporary directory, readiness
// by protocol), and returns the SPEC pointing at it. It fails with an error
// wrapping ErrServerMissing, naming the package to install and the flag to
// pass instead, when a binary is missing.
func startServer(ctx context.Context, st Strategy, opts Options, log *slog.Logger) (*server, error) {
	k, ok := serverKinds[st.Server]
	if !ok {
		return nil, fmt.Errorf("launch: strategy %s: no server kind %q", st.Name, st.Server)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	began := time.Now()
	srv := &server{group: &servers.Group{}}
	var err error
	switch st.Server {
	case "redis":
		var r *servers.Redis
		if r, err = servers.StartRedis(srv.group, servers.RedisOptions{Host: opts.Host}); err == nil {
			srv.spec = "redis://" + r.Addr
			srv.kill, srv.revive = instanceFaults(r.Instance)
		}
	case "redis-sentinel":
		var s *servers.Sentinel
		if s, err = servers.StartSentinel(srv.group, servers.SentinelOptions{}); err == nil {
			srv.spec = "redis-sentinel://" + strings.Join(s.SentinelAddrs, ",") + "/" + s.MasterName
			// The master of the moment dies; the sentinels promote the
			// replica, and the old master comes back as a replica.
			var killed string
			srv.kill = func(ctx context.Context) error {
				addr, err := s.KillMaster(ctx)
				if err != nil {
					return err
				}
				killed = addr
				ctx, cancel := context.WithTimeout(ctx, failoverWait)
				defer cancel()
				_, err = s.WaitFailover(ctx, addr)
				return err
			}
			srv.revive = func(context.Context) error {
				if r := s.Server(killed); r != nil {
					return r.Restart()
				}
				return fmt.Errorf("%w: no master was killed", ErrNoServer)
			}
		}
	case "redis-cluster":
		var c *servers.RedisCluster
		if c, err = servers.StartRedisCluster(srv.group, servers.ClusterOptions{Replicas: true, Host: opts.Host}); err == nil {
			srv.spec = "redis-cluster://" + strings.Join(c.Addrs, ",")
			// The first master as created: its replica takes its slots over.
			srv.kill, srv.revive = instanceFaults(c.Nodes[0].Instance)
		}
	case "memcached":
		var m *servers.Memcached
		if m, err = servers.StartMemcached(srv.group, servers.MemcachedOptions{Host: opts.Host}); err == nil {
			srv.spec = "memcached://" + m.Addr
			srv.kill, srv.revive = instanceFaults(m.Instance)
		}
	case "postgres":
		var p *servers.Postgres
		if p, err = servers.StartPostgres(srv.group, servers.PostgresOptions{Host: opts.Host}); err == nil {
			srv.spec = p.DSN()
			srv.kill, srv.revive = instanceFaults(p.Instance)
		}
	case "mysql":
		var m *servers.MariaDB
		if m, err = servers.StartMariaDB(srv.group, servers.MariaDBOptions{Host: opts.Host}); err == nil {
			srv.spec = m.URL()
			srv.kill, srv.revive = instanceFaults(m.Instance)
		}
	default:
		err = fmt.Errorf("no launcher for %s", st.Server)
	}
	if err != nil {
		srv.group.Close()
		var ni *servers.NotInstalledError
		if errors.As(err, &ni) {
			return nil, fmt.Errorf("%w: strategy %s needs %s, which is not installed: install the Debian package %s (apt-get install -y %s), or pass --store-url %s",
				ErrServerMissing, st.Name, ni.Binary, ni.Package, ni.Package, k.example)
		}
		return nil, fmt.Errorf("launch: strategy %s: start %s: %w", st.Name, st.Server, err)
	}
	log.Info("store server ready", "server", st.Server, "store", redact(srv.spec), "took", time.Since(began).Round(time.Millisecond).String())
	return srv, nil
}

// ErrNoServer is returned (wrapped) by KillServer and RestartServer when
// Start runs no store server: the strategy keeps sessions in the nodes, or
// Options.StoreURL named a server of someone else's.
var ErrNoServer = errors.New("launch: no store server of its own")

// KillServer crashes the store server Start runs, with SIGKILL: the one
// server of redis, memcached, postgres and mysql; the current master under
// redis-sentinel (the sentinels then promote the replica); the first
// master under redis-cluster (its replica takes its slots over). It
// returns once the process is gone; what the store kept is what the server
// persists (memcached and this Redis keep nothing; PostgreSQL and MariaDB
// keep every commit). Under redis-sentinel it returns once the replica
// has taken over (at most 30 s), so that RestartServer brings the old
// master back as a replica: an empty master restarted before the failover
// would wipe its replica too. Under redis-cluster it returns at once, and
// the cluster needs its node timeout (2 s) and an election before the
// replica serves: restart the server only after that. It fails with
// ErrNoServer when there is none.
func (c *Cluster) KillServer(ctx context.Context) error {
	srv, err := c.ownServer()
	if err != nil {
		return err
	}
	c.serverMu.Lock()
	defer c.serverMu.Unlock()
	if err := srv.kill(ctx); err != nil {
		return fmt.Errorf("launch: kill %s server: %w", c.strategy.Server, err)
	}
	c.log.Info("store server killed", "server", c.strategy.Server)
	return nil
}

// RestartServer starts the server KillServer crashed again, on the same
// port with the same files, and returns once it answers (a running server
// is stopped first). It fails with ErrNoServer when there is none.
func (c *Cluster) RestartServer(ctx context.Context) error {
	srv, err := c.ownServer()
	if err != nil {
		return err
	}
	c.serverMu.Lock()
	defer c.serverMu.Unlock()
	if err := srv.revive(ctx); err != nil {
		return fmt.Errorf("launch: restart %s server: %w", c.strategy.Server, err)
	}
	c.log.Info("store server restarted", "server", c.strategy.Server)
	return nil
}

func (c *Cluster) ownServer() (*server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, ErrClusterStopped
	}
	if c.server == nil || c.server.kill == nil {
		return nil, fmt.Errorf("%w: strategy %s", ErrNoServer, c.strategy.Name)
	}
	return c.server, nil
}
