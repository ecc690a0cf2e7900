// Package chaos checks that roam keeps its invariants when things go
// wrong: real `roam node` processes behind a real balancer, driven by
// users who log in, read, write and log out, while a seeded random
// schedule of faults hits them one after the other:
//
//   - kill: SIGKILL of a node, started again after a while;
//   - freeze: SIGSTOP, then SIGCONT (a long GC pause);
//   - isolate: a node's network gone (cut from its peers and from the
//     balancer) while its process runs on;
//   - partition: a node cut from its peers while the balancer still
//     reaches every node (a split brain);
//   - store-kill and store-freeze: the external store's primary crashed
//     (Sentinel fails over) or hung.
//
// Partitions are real: with Options.Isolated each node runs in a network
// namespace of its own (package internal/netmesh, which needs root), so
// gossip (UDP and TCP) and replication are cut together, silently, as a
// pulled cable cuts them. A TCP proxy in front of the peer ports could not
// cut memberlist's UDP probes. Each node's HTTP port sits behind a fault
// proxy (internal/faultproxy), which is how a node is cut off from the
// balancer.
//
// What must hold, checked as the answers arrive and once the faults are
// over (Load, Report, VerifyDead, WaitReady, WaitUsageBack):
//
//   - no answer ever carries another user's session, and no session id is
//     ever issued twice;
//   - a login never keeps the id the client came with (fixation);
//   - a logged-out session never works again, through the balancer during
//     the faults or on any node afterwards;
//   - in sync modes no acknowledged write is lost and nobody is logged out
//     (judged by bench.Judge: an increment acknowledged with a 200 must
//     show in every later answer);
//   - no counter ever exceeds the increments its user sent (no write
//     applied twice, no data from elsewhere);
//   - every node reports ready again, sees every other as a ready member,
//     and its heap, goroutines and stray copies return to their baseline.
//
// The tests print the seed; ROAM_CHAOS_SEED=N replays its schedule (the
// timing of a real cluster does not replay exactly, the faults do). Plain
// `go test` runs a short version (about half a minute: backup, kills and
// freezes); ROAM_CHAOS=long, which `make chaos` sets, runs the long one,
// partitions included, for every strategy in ROAM_CHAOS_STRATEGIES (default
// all, backup, redis-sentinel), ROAM_CHAOS_DURATION of faults each (40s).
// ROAM_CHAOS_FAULTS=kill,freeze narrows a schedule to some kinds. -short
// skips the package.
package chaos
