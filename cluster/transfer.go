package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/placement"
)

// startupGrace is how long a node with seeds waits for one to answer
// before it starts a cluster of its own (and keeps trying them).
const startupGrace = 2 * time.Second

// transferBatch bounds the entries in one transfer frame.
const transferBatch = 256

// startup joins the cluster and performs the state transfer, then puts the
// node in placement. It runs once, in the background.
func (s *Store) startup() {
	defer s.wg.Done()
	ctx := s.bg
	if len(s.cfg.Seeds) > 0 {
		deadline := time.Now().Add(startupGrace)
		for {
			n, err := s.ml.Join(s.cfg.Seeds)
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn("no seed answered; starting alone and retrying them in the background", "seeds", s.cfg.Seeds, "error", err)
				break
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
		}
	}
	if err := s.transferIn(ctx); err != nil {
		return // only when ctx ended
	}
	if s.leaving.Load() {
		return // Close began meanwhile: do not enter placement
	}
	s.mem.setState(stateReady)
	s.ready.Store(true)
	close(s.readyCh)
	s.log.Info("cluster node ready", "members", len(s.mem.view().ready))
}

// transferIn announces the node to every ready member, waits until each
// lists it in its membership, and pulls what the node will hold: in
// ModeBackup each member's share, in ModeAll everything from one member
// plus a catch-up of what was written meanwhile. Members that die meanwhile
// are skipped (their sessions are on their backups, which are asked too).
func (s *Store) transferIn(ctx context.Context) error {
	hellos := map[string]bool{}
	var started time.Time
	for {
		v := s.mem.view()
		var peers []string
		for _, m := range v.ready {
			if m != s.self && !hellos[m] {
				peers = append(peers, m)
			}
		}
		if len(peers) == 0 {
			break
		}
		if started.IsZero() {
			started = s.cfg.Now()
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, m := range peers {
			wg.Go(func() {
				var rep wire.HelloReply
				err := s.pc.call(ctx, v.peers[m], pathHello, &wire.Hello{Node: s.self, GossipAddr: s.gossipAddr, PeerAddr: s.peerAddr}, &rep)
				if err == nil && rep.SeesYou {
					mu.Lock()
					hellos[m] = true
					mu.Unlock()
					return
				}
				if err == nil && s.cfg.Now().Sub(started) > time.Second {
					// The member still lists an older us (a crashed process
					// at another address, memberlist #157): push our state
					// to it again rather than wait for the next push/pull.
					if mem, ok := s.mem.member(m); ok {
						s.noticeRejoin(m, mem.gossip)
					}
				}
			})
		}
		wg.Wait()
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	if len(hellos) == 0 {
		return nil // first node, or every other one is joining too
	}
	since := uint64(0)
	if s.cfg.Mode == ModeAll {
		// Writes that began before our hello reached their coordinator may
		// land on our source after it streamed that session: catch them up.
		since = uint64(started.Add(-2 * s.cfg.ReplicationTimeout).UnixNano())
	}
	done := map[string]bool{}
	for {
		v := s.mem.view()
		var todo []string
		for _, m := range v.ready {
			if m != s.self && !done[m] {
				todo = append(todo, m)
			}
		}
		if len(todo) == 0 {
			break
		}
		if s.cfg.Mode == ModeAll {
			m := todo[0]
			if err := s.pull(ctx, m, v.peers[m], 0); err == nil {
				if err := s.pull(ctx, m, v.peers[m], since); err == nil {
					break
				}
			}
			done[m] = true // try another source next round
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, m := range todo {
			wg.Go(func() {
				if err := s.pull(ctx, m, v.peers[m], 0); err != nil {
					s.log.Warn("state transfer from member failed; retrying", "member", m, "error", err)
					return
				}
				mu.Lock()
				done[m] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(done) < len(todo) && !sleepCtx(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// pull streams one member's transfer for this node into the table.
func (s *Store) pull(ctx context.Context, member, addr string, since uint64) error {
	n := 0
	_, err := s.pc.stream(ctx, addr, pathPull, &wire.Pull{Joiner: s.self, PeerAddr: s.peerAddr, All: s.cfg.Mode == ModeAll, Since: since}, func(t wire.Type, p []byte) error {
		var es wire.Entries
		if err := wire.Decode(t, p, &es); err != nil {
			return err
		}
		for i := range es.Items {
			s.mergeRemote(&es.Items[i], member)
		}
		n += len(es.Items)
		return nil
	})
	s.metrics.transfers.WithLabelValues("in").Add(float64(n))
	if err == nil {
		s.log.Debug("pulled state", "member", member, "sessions", n)
	}
	return err
}

// serveHello registers a joining node so writes reach it from now on.
func (s *Store) serveHello(h *wire.Hello) *wire.HelloReply {
	if h.Since != 0 {
		// A pause check: only say whether we saw the sender go down.
		return &wire.HelloReply{Node: s.self, SawYouDown: s.mem.sawDown(h.Node, time.Unix(0, h.Since)), Ready: s.mem.selfState() == stateReady}
	}
	sees := s.mem.registerHello(&helloMsg{node: h.Node, gossip: h.GossipAddr, peer: h.PeerAddr})
	return &wire.HelloReply{Node: s.self, SeesYou: sees, Ready: s.mem.selfState() == stateReady}
}

// servePull streams the entries a joiner will hold.
func (s *Store) servePull(ctx context.Context, p *wire.Pull, out *frameWriter) {
	s.mem.registerHello(&helloMsg{node: p.Joiner, peer: p.PeerAddr})
	v := s.mem.view()
	future := v.future
	if !slices.Contains(future, p.Joiner) {
		future = append(slices.Clone(future), p.Joiner)
		slices.Sort(future)
	}
	now := s.nowNano()
	var ids []string
	s.tab.each(func(e *entry) {
		if e.born.IsZero() && !e.isTombstone() || e.expired(now, time.Hour) {
			return
		}
		if p.Since != 0 && e.version.T < p.Since {
			return
		}
		if !p.All && !slices.Contains(s.holders(e.id, future), p.Joiner) {
			return
		}
		ids = append(ids, e.id)
	})
	var count uint64
	batch := &wire.Entries{}
	flush := func() bool {
		if len(batch.Items) == 0 {
			return true
		}
		if err := out.send(batch); err != nil {
			return false
		}
		count += uint64(len(batch.Items))
		for _, x := range batch.Items {
			s.tab.markReplicated(x.ID, incomingVersion(&x), p.Joiner)
		}
		batch.Items = batch.Items[:0]
		return true
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if x, ok := s.tab.get(id); ok {
			batch.Items = append(batch.Items, x)
		}
		if len(batch.Items) >= transferBatch && !flush() {
			return
		}
	}
	if !flush() {
		return
	}
	s.metrics.transfers.WithLabelValues("out").Add(float64(count))
	_ = out.send(&wire.End{Count: count})
}

// syncLoop runs the sync pass on every membership change (a moment later,
// so a burst of gossip costs one pass) and every SyncInterval, and forgets
// expired entries.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-s.mem.changed:
			if !sleepCtx(s.bg, 50*time.Millisecond) {
				return
			}
		case <-t.C:
			s.tab.gc(s.nowNano(), s.cfg.TransitionWindow)
		}
		if s.mem.selfState() == stateReady {
			s.syncPass(s.bg)
		}
	}
}

// syncPass makes sure every session this node is responsible for is on all
// its holders: on a membership change the primary sends each session whose
// placement moved to its new holders, and a node that no longer holds a
// session sends it to the holders and then forgets it. It is also the
// retry path for replication that failed. It reports how many entries it
// could not settle.
func (s *Store) syncPass(ctx context.Context) int {
	v := s.mem.view()
	now := s.nowNano()
	leaving := s.mem.selfState() == stateLeaving
	grace := int64(s.cfg.SyncInterval)
	counts := map[string]int{}
	pushes := map[string][]pending{} // target → entries
	var drops []pending
	returned := s.mem.returnedMembers()
	countRoles := v.epoch != s.countedEpoch || s.passes%10 == 0
	s.passes++
	s.countedEpoch = v.epoch
	s.tab.each(func(e *entry) {
		if e.born.IsZero() && !e.isTombstone() {
			return // a fragment awaiting its base
		}
		if countRoles {
			counts[s.role(e, v)]++
		}
		if !leaving && e.syncedEpoch == v.epoch && returned == nil {
			return
		}
		// A tombstone is placed like the session it ends: its holders keep
		// it until gc (TombstoneTTL past its deadline), so that a stale
		// copy coming back (a primary that was frozen or cut off while the
		// user logged out elsewhere) meets it and loses.
		role := s.placedRole(e.id, v)
		targets := s.targets(e.id, v)
		holder := role == "primary" || role == "backup"
		pusher := role == "primary" || !holder
		if s.cfg.Mode == ModeAll {
			holder = !leaving
			lw := e.version.Node
			_, lwAlive := v.peers[lw]
			pusher = lw == s.self || !lwAlive && s.primaryOf(e.id, v) == s.self
		}
		missing := 0
		if pusher {
			for _, t := range targets {
				if !slices.Contains(e.replicated, t) {
					pushes[t] = append(pushes[t], pending{e.id, e.version})
					missing++
				}
			}
		}
		// A member back from the dead may hold stale copies (a live one of
		// a session logged out meanwhile): every holder sends it its state,
		// whatever it believed that member had.
		for r := range returned {
			if slices.Contains(targets, r) && !(pusher && !slices.Contains(e.replicated, r)) {
				e.replicated = slices.DeleteFunc(e.replicated, func(n string) bool { return n == r })
				pushes[r] = append(pushes[r], pending{e.id, e.version})
				missing++
			}
		}
		if !holder && s.cfg.Mode == ModeBackup {
			// Not ours any more: forget it once every holder has it (and
			// no stale-view forward has written it here for a moment). It
			// stays unsynced until then, so every pass looks at it again.
			if leaving || now-e.written > grace {
				drops = append(drops, pending{e.id, e.version})
			}
			return
		}
		if missing == 0 {
			e.syncedEpoch = v.epoch
		}
	})
	if countRoles {
		s.metrics.setSessions(counts)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for r, at := range returned {
		if _, ok := pushes[r]; !ok {
			s.mem.resynced(r, at) // nothing of ours is theirs
		}
	}
	for t, list := range pushes {
		addr := v.peers[t]
		wg.Go(func() {
			n := s.pushTo(ctx, t, addr, list)
			if at, ok := returned[t]; ok && n == 0 {
				s.mem.resynced(t, at)
			}
			mu.Lock()
			failed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, d := range drops {
		dropped := false
		s.tab.with(d.id, func(e *entry) *entry {
			// replicated is cleared by every local change not learnt from
			// a target, so covering the targets means each holds this
			// very state.
			if e == nil {
				return e
			}
			for _, t := range s.targets(d.id, v) {
				if !slices.Contains(e.replicated, t) {
					return e
				}
			}
			dropped = true
			return nil
		})
		if !dropped {
			failed++
		}
	}
	return failed
}

// pending is an entry the sync pass acts on, at the version it saw.
type pending struct {
	id  string
	ver wire.Stamp
}

// pushTo sends whole entries to one target and records what it acknowledged.
// It returns how many it did not.
func (s *Store) pushTo(ctx context.Context, target, addr string, list []pending) int {
	failed := 0
	for start := 0; start < len(list); start += transferBatch {
		part := list[start:min(start+transferBatch, len(list))]
		ws := &wire.Writes{From: s.self}
		for _, p := range part {
			if x, ok := s.tab.get(p.id); ok {
				ws.Items = append(ws.Items, wire.Write{Full: true, Entry: x})
			}
		}
		var res wire.Results
		if err := s.pc.call(ctx, addr, pathWrites, ws, &res); err != nil || len(res.Items) != len(ws.Items) {
			s.log.Debug("sync push failed", "member", target, "sessions", len(ws.Items), "error", err)
			failed += len(part)
			continue
		}
		s.metrics.transfers.WithLabelValues("out").Add(float64(len(ws.Items)))
		for i, r := range res.Items {
			x := &ws.Items[i].Entry
			if r.Entry != nil {
				s.mergeAnswer(r.Entry, target)
			}
			// NeedFull to a whole entry means the target merged it and has
			// newer parts besides (writes since, at the new primary): it
			// holds all we sent.
			if r.Status == wire.StatusOK || r.Status == wire.StatusNeedFull {
				s.tab.markReplicated(x.ID, incomingVersion(x), target)
			} else {
				failed++
			}
		}
	}
	return failed
}

// role names this node's part in e under v, for metrics: "tombstone" for
// a deleted session, else its placedRole.
func (s *Store) role(e *entry, v *view) string {
	if e.isTombstone() {
		return "tombstone"
	}
	return s.placedRole(e.id, v)
}

// placedRole names this node's part in session id under v: "primary",
// "backup" (now or once the joining members are ready) or "other".
func (s *Store) placedRole(id string, v *view) string {
	if s.cfg.Mode == ModeAll {
		if s.primaryOf(id, v) == s.self {
			return "primary"
		}
		return "backup"
	}
	h := s.holders(id, v.ready)
	switch {
	case len(h) > 0 && h[0] == s.self:
		return "primary"
	case slices.Contains(h, s.self) || slices.Contains(s.holders(id, v.future), s.self):
		return "backup"
	}
	return "other"
}

func (s *Store) primaryOf(id string, v *view) string {
	return placement.Primary(id, v.ready)
}

// handOff runs sync passes, with this node out of placement, until every
// session it holds is on its new holders (or ctx ends, or a few passes
// could not finish it).
func (s *Store) handOff(ctx context.Context) error {
	// Let the leaving state spread so peers stop forwarding here.
	sleepCtx(ctx, 200*time.Millisecond)
	var left int
	for range 5 {
		left = s.syncPass(ctx)
		if left == 0 {
			s.log.Info("handed off every session")
			return nil
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("cluster: hand-off incomplete: %d sessions rely on their backups", left)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
