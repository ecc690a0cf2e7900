package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Mode is how a cluster places sessions.
type Mode string

// The modes.
const (
	// ModeBackup gives each session a primary and Backups backup nodes,
	// chosen by rendezvous hashing over the ready members; the other
	// nodes hold nothing for it and forward to the primary. Like Tomcat's
	// BackupManager, minus its per-session directory.
	ModeBackup Mode = "backup"
	// ModeAll copies every session to every node; reads are always
	// local. Like Tomcat's DeltaManager; for small clusters, since memory
	// and traffic grow with the cluster.
	ModeAll Mode = "all"
)

// Defaults for the zero values of Config.
const (
	DefaultPort               = 7946
	DefaultBackups            = 1
	DefaultTombstoneTTL       = 12 * time.Hour // session.DefaultLifetime
	DefaultReplicationTimeout = 2 * time.Second
	DefaultTransitionWindow   = 15 * time.Second
	DefaultRejoinInterval     = 5 * time.Second
	DefaultSyncInterval       = time.Second
	DefaultProbeInterval      = 250 * time.Millisecond
	DefaultProbeTimeout       = 200 * time.Millisecond
	DefaultSuspicionMult      = 5
	DefaultDeadMemberTTL      = 5 * time.Minute
)

// Config configures a cluster node. Only NodeID is required; every other
// field has a documented default.
type Config struct {
	// NodeID names the node in the cluster. It must be unique and stable
	// across restarts (placement ranks members by it, and so does the
	// balancer's owner policy, which knows nodes by roam node's --id).
	NodeID string

	// Bind is the gossip address (UDP and TCP). Default ":7946", every
	// interface.
	Bind string
	// Advertise is the gossip address peers use to reach this node.
	// Default: Bind, with an unspecified host replaced by the address
	// memberlist picks (the first private IP).
	Advertise string

	// PeerBind is the replication listener (HTTP/2, TCP). Default: Bind's
	// host with Bind's port + 1 (7947). Port 0 picks a free port; peers
	// learn the address from gossip, so any port works.
	PeerBind string
	// PeerAdvertise is the replication address peers use. Default: the
	// advertised gossip host with PeerBind's port.
	PeerAdvertise string

	// Seeds are gossip addresses of any members to join. A node with no
	// seeds starts a cluster. Seeds are joined again periodically, which
	// heals partitions (memberlist does not on its own).
	Seeds []string

	// Mode is ModeBackup (the default) or ModeAll.
	Mode Mode
	// Backups is the number of backup copies of each session in
	// ModeBackup. Default 1; every member must use the same value.
	Backups int
	// Async makes a write return once the coordinating node has applied
	// it, replicating in the background. The default, sync, returns only
	// after the backups (ModeBackup) or all peers (ModeAll) applied it.
	Async bool

	// Secret, when set, encrypts gossip (memberlist's keyring, with a key
	// derived from it) and authenticates replication (TLS 1.3, both ends
	// proving a key derived from it), so a node without it can neither join
	// nor inject a session. Empty means no encryption or authentication:
	// for loopback and trusted networks only.
	Secret []byte

	// TombstoneTTL is how long a deleted session's tombstone outlives the
	// later of its deletion and its last deadline, so a stale replica or a
	// late transfer never brings a logged-out session back. Default
	// DefaultTombstoneTTL; keep it at least the Manager's Lifetime.
	TombstoneTTL time.Duration

	// ReplicationTimeout bounds each peer call (a replication, a forward).
	// A peer that does not answer in time is treated as failed for that
	// call. Default DefaultReplicationTimeout: longer than a GC pause, so a
	// frozen peer delays writes rather than failing them.
	ReplicationTimeout time.Duration

	// TransitionWindow is how long after a membership change a primary
	// that misses an id asks the id's previous holders for it. Default
	// DefaultTransitionWindow.
	TransitionWindow time.Duration

	// RejoinInterval is how often the node joins its seeds and recently
	// failed members again if they are not in its membership. Default
	// DefaultRejoinInterval.
	RejoinInterval time.Duration

	// SyncInterval is how often the node re-checks that the sessions it is
	// responsible for are on all their holders. Default DefaultSyncInterval.
	SyncInterval time.Duration

	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection
	// (see docs/cluster.md). Defaults DefaultProbeInterval,
	// DefaultProbeTimeout, DefaultSuspicionMult: a crash reaches every
	// survivor in about 2–3 s at up to 10 nodes, and a node frozen for 1 s
	// is suspected but not declared dead.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int

	// DeadMemberTTL is how long a member that failed (crashed, or cut off:
	// not one that left gracefully) still counts in the cluster size of
	// which a node must see at least half, itself included, to serve. A
	// node that sees fewer is on the small side of a partition: it leaves
	// placement, and when it sees enough members again it pulls its share
	// before serving, so its stale copies never answer (docs/cluster.md,
	// "Partitions"). Default DefaultDeadMemberTTL; negative turns the
	// protection off (every node serves whatever it can see).
	DeadMemberTTL time.Duration

	// Logger receives membership and replication events. Default
	// slog.Default().
	Logger *slog.Logger
	// Registry, when set, receives the store's Prometheus metrics.
	Registry prometheus.Registerer

	// Now returns the current time. Default time.Now.
	Now func() time.Time

	hooks *testHooks
}

// testHooks lets in-package tests cut links between nodes.
type testHooks struct {
	// gossip wraps the memberlist transport.
	gossip func(memberlist.Transport) memberlist.Transport
	// blockPeer reports whether calls to a peer's replication address fail.
	blockPeer func(addr string) bool
	// memberlist adjusts the memberlist configuration.
	memberlist func(*memberlist.Config)
	// noWriteStreams makes the node serve no write streams (404), as a
	// node of an older version would.
	noWriteStreams bool
}

// provision fills the defaults of c and checks it. It returns an error that
// names the offending field.
func (c *Config) provision() error {
	if c.NodeID == "" {
		return errors.New("cluster: Config.NodeID is required")
	}
	if len(c.NodeID) > 128 {
		return errors.New("cluster: Config.NodeID is longer than 128 bytes")
	}
	switch c.Mode {
	case "":
		c.Mode = ModeBackup
	case ModeBackup, ModeAll:
	default:
		return fmt.Errorf("cluster: Config.Mode %q: want %q or %q", c.Mode, ModeBackup, ModeAll)
	}
	if c.Backups == 0 {
		c.Backups = DefaultBackups
	}
	if c.Backups < 0 || c.Backups > 16 {
		return fmt.Errorf("cluster: Config.Backups %d: want 1 to 16", c.Backups)
	}
	if c.Bind == "" {
		c.Bind = ":" + strconv.Itoa(DefaultPort)
	}
	host, port, err := splitHostPort(c.Bind)
	if err != nil {
		return fmt.Errorf("cluster: Config.Bind %q: %w", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("cluster: Config.Advertise %q: %w", c.Advertise, err)
		}
	}
	if c.PeerBind == "" {
		p := 0
		if port != 0 {
			p = port + 1
		}
		c.PeerBind = net.JoinHostPort(host, strconv.Itoa(p))
	}
	if _, _, err := splitHostPort(c.PeerBind); err != nil {
		return fmt.Errorf("cluster: Config.PeerBind %q: %w", c.PeerBind, err)
	}
	if c.PeerAdvertise != "" {
		if _, _, err := splitHostPort(c.PeerAdvertise); err != nil {
			return fmt.Errorf("cluster: Config.PeerAdvertise %q: %w", c.PeerAdvertise, err)
		}
	}
	for _, s := range c.Seeds {
		if _, _, err := splitHostPort(s); err != nil {
			return fmt.Errorf("cluster: Config.Seeds: %q: %w", s, err)
		}
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("cluster: Config.%s must not be negative", name)
		}
		return nil
	}
	for _, f := range []struct {
		d    *time.Duration
		v    time.Duration
		name string
	}{
		{&c.TombstoneTTL, DefaultTombstoneTTL, "TombstoneTTL"},
		{&c.ReplicationTimeout, DefaultReplicationTimeout, "ReplicationTimeout"},
		{&c.TransitionWindow, DefaultTransitionWindow, "TransitionWindow"},
		{&c.RejoinInterval, DefaultRejoinInterval, "RejoinInterval"},
		{&c.SyncInterval, DefaultSyncInterval, "SyncInterval"},
		{&c.ProbeInterval, DefaultProbeInterval, "ProbeInterval"},
		{&c.ProbeTimeout, DefaultProbeTimeout, "ProbeTimeout"},
	} {
		if err := def(f.d, f.v, f.name); err != nil {
			return err
		}
	}
	if c.ProbeTimeout > c.ProbeInterval {
		return fmt.Errorf("cluster: Config.ProbeTimeout %v exceeds ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.DeadMemberTTL == 0 {
		c.DeadMemberTTL = DefaultDeadMemberTTL
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.SuspicionMult < 1 {
		return fmt.Errorf("cluster: Config.SuspicionMult %d: want at least 1", c.SuspicionMult)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
