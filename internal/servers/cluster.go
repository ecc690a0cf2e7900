package servers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// ClusterOptions configures StartRedisCluster. The zero value is three
// masters without replicas and a 2 s node timeout.
type ClusterOptions struct {
	// Binary and CLI are the paths of redis-server and redis-cli; looked
	// up when empty.
	Binary, CLI string
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

// RedisCluster is a running Redis Cluster.
type RedisCluster struct {
	// Addrs lists every node: the three masters first, as created, then the
	// replicas (if any). Roles change after a failover.
	Addrs       []string
	Nodes       []*Redis
	NodeTimeout time.Duration
}

// StartRedisCluster starts three masters (and three replicas with
// ClusterOptions.Replicas) with cluster-enabled yes, all registered with c,
// joins them with `redis-cli --cluster create`, and returns once every node
// reports cluster_state:ok and knows every other node, and every replica
// has synced. It fails with a *NotInstalledError when redis-server or
// redis-cli is missing.
func StartRedisCluster(c Cleaner, o ClusterOptions) (*RedisCluster, error) {
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 2 * time.Second
	}
	bin, cli := o.Binary, o.CLI
	var err error
	if bin == "" {
		if bin, err = need("redis-server", "redis-server"); err != nil {
			return nil, err
		}
	}
	if cli == "" {
		if cli, err = need("redis-cli", "redis-tools"); err != nil {
			return nil, err
		}
	}
	n := clusterMasters
	if o.Replicas {
		n *= 2
	}
	rc := &RedisCluster{NodeTimeout: o.NodeTimeout}
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
		node, err := startRedisNode(c, cfg)
		if err != nil {
			return nil, err
		}
		rc.Nodes = append(rc.Nodes, node)
		rc.Addrs = append(rc.Addrs, node.Addr)
	}

	args := append([]string{"--cluster", "create"}, rc.Addrs...)
	if o.Replicas {
		args = append(args, "--cluster-replicas", "1")
	}
	args = append(args, "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), slowStartTimeout)
	defer cancel()
	create, err := proc.Start(ctx, proc.Spec{Name: "redis-cli --cluster create", Path: cli, Args: args})
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	if err := create.Wait(); err != nil {
		return nil, fmt.Errorf("servers: redis-cli --cluster create: %w\n%s", err, tail(create.Output(), failureTailBytes))
	}
	okCtx, okCancel := context.WithTimeout(context.Background(), rc.okTimeout())
	defer okCancel()
	if err := rc.WaitOK(okCtx); err != nil {
		return nil, err
	}
	if err := rc.waitReplicasSynced(); err != nil {
		return nil, fmt.Errorf("servers: cluster replicas: %w", err)
	}
	return rc, nil
}

// okTimeout is how long a healthy cluster may take to report ok: a
// replica takes over about NodeTimeout plus a second after its master died.
func (rc *RedisCluster) okTimeout() time.Duration { return 10*rc.NodeTimeout + 20*time.Second }

// WaitOK waits until every running node reports cluster_state:ok with all
// 16384 slots served and knows every node of the cluster, or ctx ends.
// Killing a master without replicas leaves the cluster failed, so WaitOK
// then fails.
func (rc *RedisCluster) WaitOK(ctx context.Context) error {
	err := proc.Poll(ctx, func(ctx context.Context) error {
		for i, node := range rc.Nodes {
			if !node.Running() {
				continue
			}
			info, err := respInfo(ctx, rc.Addrs[i], "CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("%s: %w", rc.Addrs[i], err)
			}
			if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" || info["cluster_known_nodes"] != strconv.Itoa(len(rc.Nodes)) {
				return fmt.Errorf("%s: cluster_state=%s slots_ok=%s known_nodes=%s",
					rc.Addrs[i], info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("servers: redis cluster not ok: %w", err)
	}
	return nil
}

// waitReplicasSynced waits until every replica's link to its master is up.
func (rc *RedisCluster) waitReplicasSynced() error {
	ctx, cancel := context.WithTimeout(context.Background(), fastStartTimeout)
	defer cancel()
	return proc.Poll(ctx, func(ctx context.Context) error {
		for _, addr := range rc.Addrs {
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
