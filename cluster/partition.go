package cluster

import (
	"fmt"
	"time"
)

// leaseTime is how recently a node must have heard from half of the
// cluster to serve from its copies: shorter than the time its peers take
// to declare it dead (a failed probe plus the suspicion timeout).
func (s *Store) leaseTime() time.Duration { return s.pauseLimit() * 4 / 5 }

// watchLease runs on every pause tick: it notes when the node loses
// contact with half of the cluster, and when contact is back it checks
// whether members declared it dead meanwhile (and re-syncs if so) before
// it serves again.
func (s *Store) watchLease(ready bool) {
	in := s.mem.inContact(s.leaseTime())
	lapsed := s.lapsedAt.Load()
	switch {
	case !in && lapsed == 0 && ready:
		s.lapsedAt.Store(time.Now().UnixNano())
		s.lapses.Add(1)
		s.log.Info("lost contact with half of the cluster: not serving until it is back")
	case in && lapsed != 0:
		// The check starts (and gates servable) before the lapse ends.
		s.checkDeclaredDead(time.Unix(0, lapsed).Add(-s.leaseTime()-time.Second), "contact is back")
		s.lapsedAt.Store(0)
	case !ready && lapsed != 0 && s.resyncing.Load():
		s.lapsedAt.Store(0) // re-syncing anyway
	}
}

// Split-brain protection. A node cut off from most of the cluster cannot
// tell a partition from the crash of everyone else, and while it is cut
// off the others take over its sessions: they serve writes and logouts it
// never sees. If it went on serving, its copies would answer as if nothing
// had happened, during the partition (a balancer that still reaches it) and
// for a moment after it heals. So a node that sees fewer than half of the
// cluster (membership.countLocked) leaves placement at once, and comes back
// only after it sees enough members again and has pulled its share from
// them, the way a joining node does. The merge of that pull brings every
// tombstone and every newer write, whatever its own copies said.

// minorityWatch checks every ProbeInterval whether this node still sees
// half of the cluster (dead members age out of the count without any
// gossip event), and when it does not, runs leaveMinority.
func (s *Store) minorityWatch() {
	s.every(s.cfg.ProbeInterval, func() {
		ok, seen, all := s.mem.majority()
		if ok || s.mem.selfState() != stateReady || s.leaving.Load() {
			return
		}
		s.leaveMinority(seen, all)
	})
}

// leaveMinority takes the node out of placement, waits until it sees half
// of the cluster again, pulls its share and puts it back. Calls meanwhile
// are forwarded (and fail while no holder can be reached).
func (s *Store) leaveMinority(seen, all int) {
	if !s.resyncing.CompareAndSwap(false, true) {
		return
	}
	defer s.resyncing.Store(false)
	s.lapses.Add(1)
	s.log.Warn("sees fewer than half of the cluster: out of placement until it sees enough members again", "seen", seen, "members", all)
	s.metrics.minority.Inc()
	s.mem.setState(stateJoining)
	s.ready.Store(false)
	for {
		if ok, _, _ := s.mem.majority(); ok {
			break
		}
		if !sleepCtx(s.bg, s.cfg.ProbeInterval) {
			return
		}
	}
	if err := s.transferIn(s.bg); err != nil || s.leaving.Load() {
		return
	}
	s.mem.setState(stateReady)
	s.ready.Store(true)
	s.log.Info("sees enough of the cluster again: re-synced and back in placement", "members", len(s.mem.view().ready))
}

// stillHeld returns nil when the node kept its lease and its place for the
// whole of a write that began at lapse count n0. A write that outlived them
// (its replication stalled while the node was cut off, and completed after
// the others had taken over) is not acknowledged: the side that took over
// may have moved on without it.
func (s *Store) stillHeld(id string, n0 uint64) error {
	// A node leaving gracefully hands what it holds off: its writes stand.
	if s.lapses.Load() == n0 && s.lapsedAt.Load() == 0 && s.mem.selfState() != stateJoining && s.mem.quorate.Load() {
		return nil
	}
	return fmt.Errorf("%w: session %s: this node lost contact with the cluster during the write", ErrUnavailable, fingerprint(id))
}
