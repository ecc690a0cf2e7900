package storespec

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roamsession/roam/cluster"
)

// openCluster opens the replicated cluster store. mode is what follows
// "cluster:": "backup" or "all", optionally with query options:
//
//	backups=N        backup copies per session in backup mode (default 1)
//	sync=true|false  acknowledge writes after replication (default true)
//	peer=host:port   replication listener (default: the cluster bind host,
//	                 port + 1, so 7947 beside gossip on 7946)
//	tombstone_ttl=D  how long deletions are remembered (default 12h)
//	dead_member_ttl=D how long a failed member counts toward the half of
//	                 the cluster a node must see to serve (default 5m;
//	                 negative turns split-brain protection off)
//
// Gossip binds env.ClusterBind (roam node defaults it to the listen host,
// port 7946) and joins env.Join. The store is Ready once its state transfer
// is done; Close leaves gracefully, handing the node's sessions off first.
// Peer traffic uses its own listener, not the node's HTTP one.
func openCluster(ctx context.Context, mode string, env Env) (*Opened, error) {
	name, query, _ := strings.Cut(mode, "?")
	cfg := cluster.Config{
		NodeID:    env.NodeID,
		Bind:      env.ClusterBind,
		Advertise: env.ClusterAdvertise,
		Seeds:     env.Join,
		Secret:    env.ClusterSecret,
		Logger:    env.Logger,
		Registry:  env.Registry,
	}
	switch name {
	case "backup":
		cfg.Mode = cluster.ModeBackup
	case "all":
		cfg.Mode = cluster.ModeAll
	default:
		return nil, fmt.Errorf("store spec %q: %w: want cluster:backup or cluster:all", "cluster:"+mode, ErrUnknownSpec)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("store spec %q: options: %w", "cluster:"+mode, err)
	}
	for key, vals := range q {
		v := vals[len(vals)-1]
		bad := func(err error) error {
			return fmt.Errorf("store spec %q: option %s=%q: %w", "cluster:"+mode, key, v, err)
		}
		switch key {
		case "backups":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad(err)
			}
			cfg.Backups = n
		case "sync":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad(err)
			}
			cfg.Async = !b
		case "peer":
			cfg.PeerBind = v
		case "tombstone_ttl":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, bad(err)
			}
			cfg.TombstoneTTL = d
		case "dead_member_ttl":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, bad(err)
			}
			cfg.DeadMemberTTL = d
		default:
			return nil, fmt.Errorf("store spec %q: unknown option %q (want backups, sync, peer, tombstone_ttl, dead_member_ttl)", "cluster:"+mode, key)
		}
	}
	if cfg.Mode == cluster.ModeAll && q.Has("backups") {
		return nil, fmt.Errorf("store spec %q: backups applies to cluster:backup only", "cluster:"+mode)
	}
	s, err := cluster.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store spec %q: %w", "cluster:"+mode, err)
	}
	return &Opened{
		Store: s,
		Kind:  "cluster",
		Close: s.Close,
		Ready: s.Ready,
	}, nil
}
