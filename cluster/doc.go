// Package cluster is a session.Store replicated across the app servers
// themselves, with no external store: Tomcat's "session clustering" in its
// two designs.
//
// In ModeBackup (the default) each session has a primary and Config.Backups
// backups, chosen by rendezvous hashing (package placement) over the ready
// members, so any node, and the balancer's owner policy, computes where a
// session lives without a directory; calls at other nodes are forwarded,
// and when a primary dies its backup, already holding the session, is the
// next in the ranking and takes over. In ModeAll every node holds every
// session and reads are always local.
//
// Membership is hashicorp/memberlist, tuned so a crash reaches every
// survivor within about 3 s and a 1 s pause is survived. Replication runs
// over persistent HTTP/2 connections, TLS-authenticated by a key derived
// from the shared secret. Each session is a last-writer-wins map of stamped
// parts, so replicas converge whatever order writes arrive in, and a
// deletion is a tombstone no stale copy can undo. A joining node pulls its
// share before it is ready; a leaving one hands its sessions off first.
//
// docs/cluster.md describes the design, the consistency rules, the tuning
// and the tests.
package cluster
