package launch

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownStrategy is returned (wrapped) by Lookup and New for a strategy
// name that is not in Strategies.
var ErrUnknownStrategy = errors.New("launch: unknown strategy")

// DefaultStrategy is the strategy used when none is named: it needs no
// external server and loses no session when a node crashes.
const DefaultStrategy = "backup"

// Where sessions live, as Strategy.Holds says.
const (
	// HeldByNode: each node keeps the sessions it created in its own
	// memory; a crash loses them.
	HeldByNode = "node"
	// HeldByCluster: the nodes replicate sessions among themselves; a node
	// holds some as primary and some as backup (or all of them, in all).
	HeldByCluster = "cluster"
	// HeldByServer: an external server holds every session; the nodes
	// hold none.
	HeldByServer = "server"
)

// A Strategy is one remedy for session inconsistency, as `roam demo
// --strategy` and `roam bench --strategy` name it: the store every node
// opens, and the balancing policy in front of them.
type Strategy struct {
	// Name is the strategy's name: none, sticky, ip-hash, all, backup,
	// redis, redis-sentinel, redis-cluster, memcached, postgres or mysql.
	Name string
	// Store is the store SPEC the nodes open, without the server address
	// for external stores ("redis", "postgres"): memory, cluster:backup,
	// cluster:all, or the kind of server the URL must point at.
	Store string
	// Policy is the balancer's policy (lb.Config.Policy).
	Policy string
	// Server is the external server the strategy needs, "" for none. It
	// names both what launch starts when no URL is given and what the URL
	// must point at.
	Server string
	// Holds says where sessions live: HeldByNode, HeldByCluster or
	// HeldByServer.
	Holds string
	// Summary is one line on how the strategy works.
	Summary string
	// Trade is one paragraph on what the strategy buys and what it costs.
	Trade string
}

// External reports whether the strategy needs a server outside the nodes.
func (s Strategy) External() bool { return s.Server != "" }

// strategies is the table behind Lookup and Strategies, in the order a
// newcomer should meet them: the problem, the balancer's remedies, the
// cluster's, then the external stores.
var strategies = []Strategy{
	{
		Name: "none", Store: "memory", Policy: "round_robin", Holds: HeldByNode,
		Summary: "per-node memory sessions behind round-robin: the problem itself",
		Trade: "Each server keeps its sessions in its own memory and the balancer hands requests out in turn. " +
			"Nothing to run and nothing to configure, and it does not work: a login exists only on the server " +
			"that made it, so with N servers you are logged out on about N−1 of every N requests, " +
			"and for good once that server dies.",
	},
	{
		Name: "sticky", Store: "memory", Policy: "cookie", Holds: HeldByNode,
		Summary: "per-node memory sessions, the balancer pins each browser to one node with a signed cookie",
		Trade: "The balancer sets a signed cookie that pins your browser to one server, which keeps your session " +
			"in memory. No shared state and no extra servers, and each request is answered from local memory. " +
			"The price: your session lives on one machine only. When it crashes or is taken out for a deploy, " +
			"the balancer pins you to another server, which has never heard of you: you are logged out.",
	},
	{
		Name: "ip-hash", Store: "memory", Policy: "ip_hash", Holds: HeldByNode,
		Summary: "per-node memory sessions, the balancer picks the node from a hash of the client's address",
		Trade: "The balancer picks your server from a hash of your IP address, so you keep returning to it " +
			"without any cookie. Everyone behind one address (a company NAT, a mobile carrier, and here everyone " +
			"on 127.0.0.1) lands on the same server, so load spreads unevenly; and when that server dies, " +
			"all of its users are logged out together.",
	},
	{
		Name: "all", Store: "cluster:all", Policy: "round_robin", Holds: HeldByCluster,
		Summary: "every node holds every session; each change is copied to all peers (like Tomcat's DeltaManager)",
		Trade: "Every change to a session is copied to every server, so any server can answer any request " +
			"from its own memory and a crash loses nothing: the balancer may send you anywhere. The price " +
			"grows with the cluster: every server holds every session, and each write travels to N−1 peers, " +
			"which is fine for a handful of servers and wasteful beyond.",
	},
	{
		Name: "backup", Store: "cluster:backup", Policy: "owner", Holds: HeldByCluster,
		Summary: "each session has a primary and a backup node; the balancer routes to the primary (like Tomcat's BackupManager)",
		Trade: "Each session lives on two servers, a primary and a backup, chosen by hashing its id; the balancer " +
			"computes the same placement and sends you straight to the primary. When the primary dies, your " +
			"requests go to the backup, which already holds your session and becomes the new primary. Memory and " +
			"replication traffic per session stay constant however many servers you add; two servers dying at " +
			"once can lose the sessions they shared.",
	},
	{
		Name: "redis", Store: "redis", Policy: "round_robin", Server: "redis", Holds: HeldByServer,
		Summary: "sessions in one external Redis server; the nodes are stateless",
		Trade: "Sessions live in a Redis server and the app servers keep nothing, so any server can answer any " +
			"request and servers come and go freely. Every request pays a network round trip to Redis, and that " +
			"one Redis is now the single point of failure: when it goes, everyone is logged out " +
			"(redis-sentinel and redis-cluster remove it).",
	},
	{
		Name: "redis-sentinel", Store: "redis-sentinel", Policy: "round_robin", Server: "redis-sentinel", Holds: HeldByServer,
		Summary: "sessions in a Redis primary with a replica, watched by Sentinels that fail over",
		Trade: "A Redis primary replicates to a replica, and Sentinels promote the replica when the primary dies, " +
			"so the store is no longer a single point of failure. Replication is asynchronous: a failover can " +
			"lose the last writes, and requests fail for the seconds Sentinel takes to decide. Three more " +
			"processes to run and watch.",
	},
	{
		Name: "redis-cluster", Store: "redis-cluster", Policy: "round_robin", Server: "redis-cluster", Holds: HeldByServer,
		Summary: "sessions sharded over a Redis Cluster of three primaries, each with a replica",
		Trade: "Sessions are spread over several Redis primaries, each with a replica that takes over when it dies, " +
			"so storage and write throughput grow with the cluster. It is the most machinery of all: six " +
			"servers, a client that follows slot moves, and a shard's requests fail while its failover runs.",
	},
	{
		Name: "memcached", Store: "memcached", Policy: "round_robin", Server: "memcached", Holds: HeldByServer,
		Summary: "sessions in an external memcached; the nodes are stateless",
		Trade: "Sessions live in memcached: very fast, trivial to run, and the app servers are stateless. But " +
			"memcached is a cache, not a database: it evicts sessions under memory pressure, keeps nothing " +
			"across a restart and has no replication, so a memcached restart logs everyone out.",
	},
	{
		Name: "postgres", Store: "postgres", Policy: "round_robin", Server: "postgres", Holds: HeldByServer,
		Summary: "sessions in a PostgreSQL table; the nodes are stateless",
		Trade: "Sessions live in PostgreSQL: durable, transactional, easy to inspect with SQL, and often a database " +
			"you already run and back up. Every request costs a query and every change a transaction, expired " +
			"rows need sweeping, and the database must itself be made highly available.",
	},
	{
		Name: "mysql", Store: "mysql", Policy: "round_robin", Server: "mysql", Holds: HeldByServer,
		Summary: "sessions in a MySQL/MariaDB table; the nodes are stateless",
		Trade: "Sessions live in MySQL or MariaDB: durable and familiar, and often a database you already run. " +
			"Every request costs a query and every change a write, expired rows need sweeping, and the database " +
			"must itself be replicated to be no single point of failure.",
	},
}

// Strategies returns every strategy, the problem first, then the remedies.
func Strategies() []Strategy { return append([]Strategy(nil), strategies...) }

// StrategyNames returns the strategy names in the order of Strategies.
func StrategyNames() []string {
	names := make([]string, len(strategies))
	for i, s := range strategies {
		names[i] = s.Name
	}
	return names
}

// Lookup returns the strategy called name ("" means DefaultStrategy). It
// returns an error wrapping ErrUnknownStrategy, listing the valid names,
// when there is none.
func Lookup(name string) (Strategy, error) {
	if name == "" {
		name = DefaultStrategy
	}
	for _, s := range strategies {
		if s.Name == name {
			return s, nil
		}
	}
	return Strategy{}, fmt.Errorf("%w %q (want one of %s)", ErrUnknownStrategy, name, strings.Join(StrategyNames(), ", "))
}
