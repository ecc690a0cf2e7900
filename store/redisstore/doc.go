// Package redisstore keeps sessions in Redis, through a go-redis
// UniversalClient, so one store serves a standalone server, a Sentinel
// setup (redis.NewFailoverClient) and a Redis Cluster (redis.NewClusterClient).
//
// A Store implements session.Store, session.Toucher, session.PrincipalIndex
// and session.Lister, and passes the store/storetest suite on standalone,
// Sentinel and Cluster servers. It needs Redis 6.2 or later (ZADD GT, SCAN
// TYPE) and no CONFIG access: it does not rely on keyspace notifications,
// which managed Redis services often forbid.
//
// # Keys
//
// A session is one hash, Prefix+"{"+id+"}" (Prefix defaults to "roam:").
// The braces are a Cluster hash tag, so everything of one session is in one
// slot. Each attribute is the field "v:"+name; the metadata fields are
// c (created), t (touched), e (expires), p (principal) and i (the score the
// principal index holds for the session), times as unix microseconds. No
// attribute name can collide with them. The hash's TTL is PEXPIREAT at
// Expires (rounded up to the millisecond): it frees memory, while every
// method decides whether a session is live by comparing the e field with
// the caller's clock, so a session is never served past its Expires even
// when Redis has not dropped the key yet.
//
// A principal's sessions are listed in the sorted set
// Prefix+"principal:"+principal, each id scored at or after its session's
// deadline. Every index write prunes members whose score has passed
// (ZREMRANGEBYSCORE), and the set's own TTL follows its highest score, so
// the index cleans itself up although Redis sends no event when a session
// expires. A write re-indexes a session only when its deadline passes the
// recorded score, and then with a quarter of the time left as slack, so a
// busy session writes its index about once per quarter of its lifetime
// rather than on every request.
//
// # Round trips
//
// Load is one HGETALL. Apply, Touch and Delete are one script each (EVALSHA,
// falling back to EVAL when the server's script cache lacks it), which runs
// atomically: it checks that the session exists and is live, applies the
// whole delta, sets the TTL and, outside Cluster, maintains the index. A
// request that changes nothing writes nothing: the Manager only loads.
// Touch writes the two deadline fields and the TTL, never the attributes.
//
// # A deleted session stays deleted
//
// Delete removes the hash, and every write without Create runs in a script
// that first checks the hash exists, so a request that raced a logout gets
// session.ErrNotFound instead of bringing the session back. There is no
// RENAME: the Manager renews an id by creating the new one and deleting
// the old.
//
// # Redis Cluster
//
// The index key of a principal is in another slot than its sessions, so on
// Cluster no script can touch both. Setting a principal indexes the session
// first (a failure fails Apply before the session changes, so a session is
// never missing from its principal's index because of it); moving the
// deadline past the recorded score, removing a session from its old
// principal's index and Delete's clean-up are extra steps after the script,
// best effort: a failure is logged, and the next write of the session tries
// again. The index is therefore a superset: FindByPrincipal and
// DeleteByPrincipal check every listed id against its hash (principal and
// deadline), and DeleteByPrincipal deletes each with a script that checks
// the principal again. A score left behind a deadline by a failed step is
// raised by the next FindByPrincipal that sees it.
//
// go-redis refreshes a ClusterClient's slot map only every minute or when a
// node answers MOVED or ASK, and a crashed master answers nothing: without
// help the client keeps sending that master's slots to a dead address for
// up to a minute after its replica took over. The store therefore asks for
// a reload (ClusterClient.ReloadState, at most one per 200 ms) whenever a
// command fails with a connection error or a topology reply (CLUSTERDOWN,
// TRYAGAIN, MASTERDOWN, READONLY, LOADING), and writes resume within about
// the cluster's node timeout plus a second or two of the replica's
// election.
//
// # Replication and failover
//
// Redis replicates asynchronously: a write the master acknowledged may not
// have reached a replica when the master crashes, and the promoted replica
// then lacks it (a login, a logout, a change). Options.WaitReplicas makes
// every write wait (WAIT) for that many replicas, so what was acknowledged
// survives a failover; it costs a replica round trip per write and fails
// writes with ErrNotReplicated while too few replicas are up.
//
// # Timeouts and failures
//
// The store uses the client's timeouts (DialTimeout, ReadTimeout,
// WriteTimeout, and its retries: MaxRetries, DialerRetries) and, when set,
// Options.Timeout for each call as a whole. Every failure is returned
// wrapped, so the Manager answers 503, and the client reconnects by itself
// when the server is back. go-redis's defaults (5 s dial, 5 s read, five
// dial attempts per connection) keep a request to a dead server waiting for
// seconds; see docs/stores/redis.md for settings that fail in about
// 100 ms.
//
// The Store does not own its client: whoever created the client closes it,
// after the last use of the Store. The Store has no goroutines and no Close.
package redisstore
