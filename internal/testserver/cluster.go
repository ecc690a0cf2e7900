package testserver

import (
	"context"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/servers"
)

// ClusterOptions configures RedisCluster. The zero value is three masters
// without replicas and a 2 s node timeout.
type ClusterOptions struct {
	// Replicas adds one replica per master (six nodes), so that killing a
	// master fails over instead of leaving its slots uncovered.
	Replicas bool
	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before it is marked failed. 2 s when zero.
	NodeTimeout time.Duration
	// Host is the loopback address every node listens on; 127.0.0.1 when
	// empty.
	Host string
}

// Cluster is a Redis Cluster owned by one test. Its methods fail the test on
// error and must be called from the test's goroutine.
type Cluster struct {
	// Addrs lists every node: the three masters first, as created, then the
	// replicas (if any). Roles change after a failover.
	Addrs       []string
	Nodes       []*RedisServer
	NodeTimeout time.Duration

	srv *servers.RedisCluster
	t   testing.TB
}

// RedisCluster starts three masters (and three replicas with
// ClusterOptions.Replicas) with cluster-enabled yes, joins them with
// `redis-cli --cluster create`, and returns once every node reports
// cluster_state:ok and knows every other node, and every replica has
// synced. It skips the test (fails it under CI) when redis-server or
// redis-cli is missing.
func RedisCluster(t testing.TB, opts ...ClusterOptions) *Cluster {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "redis-server", "redis-server")
	cli := Require(t, "redis-cli", "redis-tools")
	srv, err := servers.StartRedisCluster(t, servers.ClusterOptions{Binary: bin, CLI: cli,
		Replicas: o.Replicas, NodeTimeout: o.NodeTimeout, Host: o.Host})
	if err != nil {
		t.Fatalf("%v", err)
	}
	c := &Cluster{Addrs: srv.Addrs, NodeTimeout: srv.NodeTimeout, srv: srv, t: t}
	for _, n := range srv.Nodes {
		c.Nodes = append(c.Nodes, wrapRedis(t, n))
	}
	return c
}

// Kill SIGKILLs node i (an index into Nodes and Addrs).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.Nodes[i].Kill()
}

// Restart restarts node i on the same port with its nodes.conf, so it
// rejoins the cluster (a former master comes back as a replica).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Nodes[i].Restart()
}

// WaitOK waits until every running node reports cluster_state:ok with all
// 16384 slots served and knows every node of the cluster. After killing a
// master that has a replica, it returns once the replica has taken over
// (about NodeTimeout plus a second). It fails the test after
// 10 × NodeTimeout + 20 s; killing a master without replicas leaves the
// cluster failed, so WaitOK would fail.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*c.NodeTimeout+20*time.Second)
	defer cancel()
	if err := c.srv.WaitOK(ctx); err != nil {
		c.t.Fatalf("testserver: %v", err)
	}
}
