package testserver

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
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

// clusterMasters is the smallest cluster redis-cli agrees to create.
const clusterMasters = 3

// Cluster is a Redis Cluster owned by one test. Its methods fail the test on
// error and must be called from the test's goroutine.
type Cluster struct {
	// Addrs lists every node: the three masters first, as created, then the
	// replicas (if any). Roles change after a failover.
	Addrs       []string
	Nodes       []*RedisServer
	NodeTimeout time.Duration

	t testing.TB
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
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 2 * time.Second
	}
	bin := Require(t, "redis-server", "redis-server")
	cli := Require(t, "redis-cli", "redis-tools")
	n := clusterMasters
	if o.Replicas {
		n *= 2
	}
	c := &Cluster{NodeTimeout: o.NodeTimeout, t: t}
	for range n {
		cfg := redisNodeConfig{
			bin:             bin,
			name:            "redis-cluster",
			host:            o.Host,
			wantClusterPort: true,
			conf: func(host string, port, clusterPort int) []string {
				return append(redisBaseConf(host, port, false),
					"cluster-enabled yes",
					"cluster-config-file nodes.conf",
					"cluster-node-timeout "+strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
					// An explicit bus port: the default, port+10000, is past
					// 65535 for much of the ephemeral range.
					"cluster-port "+strconv.Itoa(clusterPort),
					// Let a replica take over however stale it is: tests
					// kill masters on purpose.
					"cluster-replica-validity-factor 0",
				)
			},
		}
		node, err := startRedisNode(t, cfg)
		if err != nil {
			t.Fatalf("%v", err)
		}
		node.t = t
		c.Nodes = append(c.Nodes, node)
		c.Addrs = append(c.Addrs, node.Addr)
	}

	args := append([]string{"--cluster", "create"}, c.Addrs...)
	if o.Replicas {
		args = append(args, "--cluster-replicas", "1")
	}
	args = append(args, "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), slowStartTimeout)
	defer cancel()
	create, err := proc.Start(ctx, proc.Spec{Name: "redis-cli --cluster create", Path: cli, Args: args})
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	if err := create.Wait(); err != nil {
		t.Fatalf("testserver: redis-cli --cluster create: %v\n%s", err, tail(create.Output(), failureTailBytes))
	}
	c.WaitOK()
	if err := c.waitReplicasSynced(); err != nil {
		t.Fatalf("testserver: cluster replicas: %v", err)
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
	err := proc.Poll(ctx, func(ctx context.Context) error {
		for i, node := range c.Nodes {
			if !node.Running() {
				continue
			}
			info, err := respInfo(ctx, c.Addrs[i], "CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("%s: %w", c.Addrs[i], err)
			}
			if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" || info["cluster_known_nodes"] != strconv.Itoa(len(c.Nodes)) {
				return fmt.Errorf("%s: cluster_state=%s slots_ok=%s known_nodes=%s",
					c.Addrs[i], info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("testserver: redis cluster not ok: %v", err)
	}
}

// waitReplicasSynced waits until every replica's link to its master is up.
func (c *Cluster) waitReplicasSynced() error {
	ctx, cancel := context.WithTimeout(context.Background(), fastStartTimeout)
	defer cancel()
	return proc.Poll(ctx, func(ctx context.Context) error {
		for _, addr := range c.Addrs {
			info, err := respInfo(ctx, addr, "INFO", "replication")
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			if info["role"] == "slave" && info["master_link_status"] != "up" {
				return fmt.Errorf("replica %s: master_link_status=%s", addr, info["master_link_status"])
			}
		}
		return nil
	})
}
