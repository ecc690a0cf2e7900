package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/placement"
)

// replicate sends one write of id (prev is the version the coordinator's
// copy had before it) to the id's targets. In sync mode it waits for each
// target; a target that fails is replaced by the next member in the id's
// ranking, which is sent the whole entry, so an acknowledged write is on
// 1+Backups nodes even while a crash is still being detected. It returns
// errDead when a replica held a tombstone that voids the write, and
// ErrUnavailable (or ErrClosed) when no other node took a copy, or in
// ModeAll when a ready peer that may be alive did not take it (it would
// serve reads without it): such a write stays applied here, but
// acknowledging it could lose it or let it be read back stale.
func (s *Store) replicate(ctx context.Context, id string, prev wire.Stamp, frag *wire.Entry) error {
	v := s.mem.view()
	targets := s.targets(id, v)
	if len(targets) == 0 {
		return nil
	}
	w := wire.Write{Prev: prev, Entry: *frag}
	if s.async != nil {
		for _, t := range targets {
			s.async.enqueue(t, v.peers[t], w)
		}
		return nil
	}
	start := time.Now()
	defer func() { s.metrics.replication.Observe(time.Since(start).Seconds()) }()
	// A write half-replicated because the client left helps nobody, so the
	// caller's cancellation is ignored; the replication has its own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*s.cfg.ReplicationTimeout)
	defer cancel()
	errs := make([]error, len(targets))
	if len(targets) == 1 {
		errs[0] = s.sendWrite(ctx, targets[0], v.peers[targets[0]], w)
	} else {
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() { errs[i] = s.sendWrite(ctx, t, v.peers[t], w) })
		}
		wg.Wait()
	}
	failed := 0
	var lastErr, servingErr error
	for i, err := range errs {
		switch {
		case errors.Is(err, errDead):
			return err
		case errors.Is(err, ErrClosed):
			// This node is stopping: nothing it acknowledges now
			// outlives it unless a peer already took the write.
			return err
		case err != nil:
			failed++
			lastErr = err
			if !isUnreachable(err) && slices.Contains(v.ready, targets[i]) {
				servingErr = err
			}
		}
	}
	if failed == 0 {
		return nil
	}
	if s.cfg.Mode == ModeAll {
		// Every ready peer serves reads of its own copy, so one that may
		// be alive (it timed out, or answered an error) and lacks the
		// write would answer stale: not acknowledged. A peer whose
		// connection is refused or reset is gone (membership drops it; a
		// restart pulls everything), and a joining one catches up by
		// itself; one copy elsewhere then makes the write survive this
		// node.
		if servingErr != nil {
			return s.unreplicated(id, servingErr)
		}
		if failed < len(targets) {
			s.metrics.degraded.Inc()
			return nil
		}
		return s.unreplicated(id, lastErr)
	}
	copies, err := s.substitute(ctx, id, v, targets, failed)
	if err != nil {
		return err
	}
	if copies+len(targets)-failed == 0 {
		return s.unreplicated(id, lastErr)
	}
	return nil
}

// unreplicated is the error of a write not acknowledged for want of
// copies.
func (s *Store) unreplicated(id string, cause error) error {
	s.log.Warn("write not acknowledged: a replica did not take it", "session", fingerprint(id), "error", cause)
	return fmt.Errorf("%w: session %s: a replica did not take the write: %w", ErrUnavailable, fingerprint(id), cause)
}

// substitute sends id's whole entry to up to n members that are next in
// its ranking after tried, to stand in for holders that failed. It returns
// how many took it; fewer than n is a degraded write (counted), no error.
func (s *Store) substitute(ctx context.Context, id string, v *view, tried []string, n int) (int, error) {
	ranked := placement.Rank(id, v.ready, len(v.ready))
	want, got := n, 0
	for _, m := range ranked {
		if got == want {
			break
		}
		if m == s.self || slices.Contains(tried, m) {
			continue
		}
		x, ok := s.tab.get(id)
		if !ok {
			return got, nil
		}
		err := s.sendWrite(ctx, m, v.peers[m], wire.Write{Full: true, Entry: x})
		if errors.Is(err, errDead) || errors.Is(err, ErrClosed) {
			return got, err
		}
		if err == nil {
			got++
			s.log.Debug("replicated to a stand-in holder", "session", fingerprint(id), "member", m)
		}
	}
	if got < want {
		s.metrics.degraded.Inc()
		s.log.Warn("write has fewer copies than configured", "session", fingerprint(id), "missing", want-got)
	}
	return got, nil
}

// sendWrite sends w to one peer and settles its answer: a replica that
// lacks the base of the write gets the whole entry; one that holds a
// tombstone makes the write void (errDead).
func (s *Store) sendWrite(ctx context.Context, peer, addr string, w wire.Write) error {
	id := w.Entry.ID
	// The version this peer will hold once it acknowledges: the local one
	// now (the coordinator holds the id's stripe, so it does not move).
	ver := s.tab.version(id)
	if addr == "" {
		return fmt.Errorf("cluster: no address for peer %s", peer)
	}
	for range 3 {
		r, err := s.batch.send(ctx, addr, w)
		if err != nil {
			return err
		}
		switch r.Status {
		case wire.StatusOK:
			s.tab.markReplicated(id, ver, peer)
			return nil
		case wire.StatusDead:
			if r.Entry != nil {
				s.mergeRemote(r.Entry, "")
			}
			return errDead
		case wire.StatusNeedFull:
			if r.Entry != nil {
				s.mergeAnswer(r.Entry, peer)
			}
			if w.Full {
				// The peer merged the whole entry and has newer parts
				// besides, which we just merged: it holds all we sent.
				s.tab.markReplicated(id, ver, peer)
				return nil
			}
			x, ok := s.tab.get(id)
			if !ok {
				return nil
			}
			w, ver = wire.Write{Full: true, Entry: x}, s.tab.version(id)
		default:
			return fmt.Errorf("cluster: peer %s answered a write with status %d", peer, r.Status)
		}
	}
	return fmt.Errorf("cluster: peer %s kept asking for the whole session %s", peer, fingerprint(id))
}

// serveWrites applies writes from a coordinator or a transfer.
func (s *Store) serveWrites(m *wire.Writes) *wire.Results {
	out := &wire.Results{Items: make([]wire.Result, len(m.Items))}
	for i := range m.Items {
		out.Items[i] = s.applyReplica(&m.Items[i], m.From)
	}
	return out
}

// applyReplica merges one incoming write and says what the sender must do.
func (s *Store) applyReplica(w *wire.Write, from string) wire.Result {
	x := &w.Entry
	if x.ID == "" {
		return wire.Result{Status: wire.StatusOK}
	}
	r := s.mergeRemote(x, from)
	switch {
	case r.dead && x.Dead.Compare(r.deadS) < 0:
		// We hold a tombstone newer than anything in the write: the
		// session is gone, whatever the sender thinks.
		st, _ := s.tab.get(x.ID)
		return wire.Result{Status: wire.StatusDead, Entry: &st}
	case r.dead:
		return wire.Result{Status: wire.StatusOK}
	case w.Full && r.hadNewer:
		// Merged; we have newer parts too, which the sender may lack.
		st, _ := s.tab.get(x.ID)
		return wire.Result{Status: wire.StatusNeedFull, Entry: &st}
	case w.Full:
		return wire.Result{Status: wire.StatusOK}
	case r.absent || r.version != w.Prev:
		// We missed an earlier write (or never had the session): ask for
		// the whole entry, and offer ours in case the sender lacks parts.
		st, _ := s.tab.get(x.ID)
		return wire.Result{Status: wire.StatusNeedFull, Entry: &st}
	}
	return wire.Result{Status: wire.StatusOK}
}

// asyncSender replicates writes in the background, one ordered queue per
// peer, in batches.
type asyncSender struct {
	s      *Store
	mu     sync.Mutex
	queues map[string]*peerQueue
	wg     sync.WaitGroup
	done   chan struct{}
}

type peerQueue struct {
	addr string
	ch   chan wire.Write
}

const asyncQueueLen = 8192

func newAsyncSender(s *Store) *asyncSender {
	return &asyncSender{s: s, queues: make(map[string]*peerQueue), done: make(chan struct{})}
}

// enqueue queues w for peer. A full queue drops the write: the entry stays
// unreplicated to that peer, and the sync pass sends it whole later.
func (a *asyncSender) enqueue(peer, addr string, w wire.Write) {
	a.mu.Lock()
	q := a.queues[peer]
	if q == nil || q.addr != addr {
		q = &peerQueue{addr: addr, ch: make(chan wire.Write, asyncQueueLen)}
		a.queues[peer] = q
		a.wg.Add(1)
		go a.run(peer, q)
	}
	a.mu.Unlock()
	select {
	case q.ch <- w:
	default:
		a.s.metrics.degraded.Inc()
	}
}

func (a *asyncSender) run(peer string, q *peerQueue) {
	defer a.wg.Done()
	s := a.s
	for {
		var batch []wire.Write
		select {
		case <-a.done:
			return
		case w := <-q.ch:
			batch = append(batch, w)
		}
	fill:
		for len(batch) < 256 {
			select {
			case w := <-q.ch:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		start := time.Now()
		var res wire.Results
		err := s.pc.call(s.bg, q.addr, pathWrites, &wire.Writes{From: s.self, Items: batch}, &res)
		s.metrics.replication.Observe(time.Since(start).Seconds())
		if err != nil || len(res.Items) != len(batch) {
			continue // the sync pass sends these entries whole
		}
		for i, r := range res.Items {
			id := batch[i].Entry.ID
			switch r.Status {
			case wire.StatusOK:
				s.tab.markReplicated(id, incomingVersion(&batch[i].Entry), peer)
			case wire.StatusNeedFull, wire.StatusDead:
				if r.Entry != nil {
					s.mergeRemote(r.Entry, "")
				}
				if r.Status == wire.StatusNeedFull {
					if x, ok := s.tab.get(id); ok {
						_ = s.sendWrite(s.bg, peer, q.addr, wire.Write{Full: true, Entry: x})
					}
				}
			}
		}
	}
}

func (a *asyncSender) close() {
	close(a.done)
	a.wg.Wait()
}
