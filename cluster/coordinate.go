package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/session"
)

// Load returns the session id. In ModeAll it reads the local copy; in
// ModeBackup the primary's, forwarding when this node is not it (and
// failing over to the next holder when the primary cannot be reached). It
// returns session.ErrNotFound when no live session has the id,
// ErrUnavailable when no holder answers, and ErrClosed after Close.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if s.localOnly() {
		return s.loadLocal(ctx, id)
	}
	return s.route(ctx, &wire.Forward{Op: wire.OpLoad, ID: id}, func() (*session.Record, error) {
		return s.loadLocal(ctx, id)
	})
}

// Apply applies d to the session id on its coordinator (the primary in
// ModeBackup, this node in ModeAll), then replicates it; in sync mode it
// returns only after every holder applied it. It returns
// session.ErrNotFound when the session does not exist (or was deleted
// concurrently) and d.Create is false.
func (s *Store) Apply(ctx context.Context, id string, d session.Delta) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	local := func() (*session.Record, error) { return nil, s.applyLocal(ctx, id, &d) }
	if s.localOnly() {
		_, err := local()
		return err
	}
	_, err := s.route(ctx, &wire.Forward{Op: wire.OpApply, ID: id, Delta: deltaToWire(&d)}, local)
	return err
}

// Touch sets the session's Touched and Expires, replicated like Apply but
// smaller. It returns session.ErrNotFound when the session does not exist.
func (s *Store) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	d := session.Delta{Touched: touched, Expires: expires}
	local := func() (*session.Record, error) { return nil, s.applyLocal(ctx, id, &d) }
	if s.localOnly() {
		_, err := local()
		return err
	}
	_, err := s.route(ctx, &wire.Forward{Op: wire.OpTouch, ID: id, Delta: deltaToWire(&d)}, local)
	return err
}

// Delete destroys the session id on every holder, leaving a tombstone that
// outlives any stale copy (see Config.TombstoneTTL). Deleting an absent id
// is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	local := func() (*session.Record, error) { return nil, s.deleteLocal(ctx, id) }
	if s.localOnly() {
		_, err := local()
		return err
	}
	_, err := s.route(ctx, &wire.Forward{Op: wire.OpDelete, ID: id}, local)
	return err
}

// localOnly reports whether calls are served from the local copy without
// routing: in ModeAll once the node is ready. A joining node in ModeAll
// forwards to a ready member, since its copy is not complete yet.
func (s *Store) localOnly() bool {
	return s.cfg.Mode == ModeAll && s.servable(context.Background())
}

// servable reports whether this node may serve calls from its own copy:
// it is in placement, sees at least half of the cluster (partition.go)
// and, if it has just woken from a long pause, the check found it was not
// declared dead meanwhile.
func (s *Store) servable(ctx context.Context) bool {
	if s.mem.selfState() != stateReady || !s.mem.quorate.Load() || s.lapsedAt.Load() != 0 {
		return false
	}
	s.pauseWait(ctx)
	return s.mem.selfState() == stateReady && !s.paused()
}

// route runs a call on id's primary: here when this node is it, else
// forwarded. When a holder cannot be reached (its process is gone, the
// connection broke) the call goes to the next holder in the id's ranking,
// which already holds the session: the failover before membership has
// even noticed the crash. A holder that times out is not skipped, since it
// may only be paused and still be serving the id; the call fails instead.
func (s *Store) route(ctx context.Context, f *wire.Forward, local func() (*session.Record, error)) (*session.Record, error) {
	v := s.mem.waitPlacement(ctx, s.cfg.ReplicationTimeout)
	holders := s.holders(f.ID, v.ready)
	selfReady := s.servable(ctx)
	if f.Hops > 0 && selfReady && slices.Contains(holders, s.self) {
		// Forwarded to us by a node that takes us for a holder: we are one.
		return local()
	}
	if f.Hops >= maxHops {
		return nil, errNotOwner
	}
	if s.mem.owed.Load() > 0 {
		// A holder back from the dead (a healed partition) may hold stale
		// copies until this node has sent it its state: ask the others
		// first.
		holders = slices.Clone(holders)
		slices.SortStableFunc(holders, func(a, b string) int {
			return cmpBool(s.mem.owes(a), s.mem.owes(b))
		})
	}
	var lastErr error
	for i, h := range holders {
		if h == s.self {
			if selfReady {
				if i > 0 {
					s.metrics.failovers.Inc()
				}
				return local()
			}
			continue
		}
		addr, ok := v.peers[h]
		if !ok {
			continue
		}
		next := *f
		next.Hops++
		s.metrics.forwards.Inc()
		rec, err := s.forward(ctx, h, addr, &next)
		if err == nil || errors.Is(err, session.ErrNotFound) {
			return rec, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cluster: %w", ctx.Err())
		}
		if isUnreachable(err) || errors.Is(err, errNotOwner) || errors.Is(err, ErrNotReady) {
			lastErr = err
			s.log.Debug("holder did not serve; trying the next", "session", fingerprint(f.ID), "holder", h, "error", err)
			continue
		}
		return nil, err
	}
	if lastErr == nil {
		if f.Hops > 0 {
			return nil, errNotOwner
		}
		lastErr = errors.New("no ready member")
	}
	return nil, fmt.Errorf("%w: session %s: %w", ErrUnavailable, fingerprint(f.ID), lastErr)
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// errNotOwner is a forwarded call's answer from a node that neither holds
// the id nor may pass it on.
var errNotOwner = errors.New("cluster: peer does not hold the session")

// forward sends f to peer and maps its answer.
func (s *Store) forward(ctx context.Context, peer, addr string, f *wire.Forward) (*session.Record, error) {
	var rep wire.ForwardReply
	if err := s.pc.call(ctx, addr, pathForward, f, &rep); err != nil {
		return nil, err
	}
	switch rep.Status {
	case wire.StatusOK:
		if f.Op == wire.OpLoad {
			if rep.Record == nil {
				return nil, fmt.Errorf("cluster: peer %s answered a load without a record", peer)
			}
			return recordFromWire(rep.Record), nil
		}
		return nil, nil
	case wire.StatusNotFound:
		return nil, session.ErrNotFound
	case wire.StatusNotReady:
		return nil, fmt.Errorf("peer %s: %w", peer, ErrNotReady)
	case wire.StatusNotOwner:
		return nil, fmt.Errorf("peer %s: %w", peer, errNotOwner)
	default:
		return nil, fmt.Errorf("cluster: peer %s: %s", peer, rep.Err)
	}
}

// serveForward runs a forwarded call as if it had arrived here, one hop on.
func (s *Store) serveForward(ctx context.Context, f *wire.Forward) *wire.ForwardReply {
	if !s.servable(ctx) {
		return &wire.ForwardReply{Status: wire.StatusNotReady}
	}
	d := deltaFromWire(&f.Delta)
	var local func() (*session.Record, error)
	switch f.Op {
	case wire.OpLoad:
		local = func() (*session.Record, error) { return s.loadLocal(ctx, f.ID) }
	case wire.OpApply, wire.OpTouch:
		local = func() (*session.Record, error) { return nil, s.applyLocal(ctx, f.ID, &d) }
	case wire.OpDelete:
		local = func() (*session.Record, error) { return nil, s.deleteLocal(ctx, f.ID) }
	}
	rec, err := s.route(ctx, f, local)
	switch {
	case err == nil:
		rep := &wire.ForwardReply{Status: wire.StatusOK}
		if rec != nil {
			rep.Record = recordToWire(rec)
		}
		return rep
	case errors.Is(err, session.ErrNotFound):
		return &wire.ForwardReply{Status: wire.StatusNotFound}
	case errors.Is(err, errNotOwner):
		return &wire.ForwardReply{Status: wire.StatusNotOwner}
	default:
		return &wire.ForwardReply{Status: wire.StatusFailed, Err: err.Error()}
	}
}

// loadLocal reads id from the local table as its coordinator. A primary
// that misses the id while membership is changing asks the id's previous
// holders first: it may own the id before its transfer arrived.
func (s *Store) loadLocal(ctx context.Context, id string) (*session.Record, error) {
	now := s.nowNano()
	rec, dead, present := s.tab.load(id, now)
	if rec != nil {
		return rec, nil
	}
	if dead || present && s.cfg.Mode == ModeAll {
		return nil, session.ErrNotFound
	}
	if s.fetchOnMiss() && s.fetchPrevious(ctx, id) {
		if rec, _, _ := s.tab.load(id, s.nowNano()); rec != nil {
			return rec, nil
		}
	}
	return nil, session.ErrNotFound
}

// fetchOnMiss reports whether a coordinator that misses an id asks other
// members for it: in ModeBackup during a membership change (the id may have
// moved here before its transfer arrived), and in async ModeAll always (a
// fresh session may not have reached this node yet; without the fetch a
// user who just logged in elsewhere would look logged out here). Otherwise a
// miss is answered locally, with no network I/O.
func (s *Store) fetchOnMiss() bool {
	if s.cfg.Mode == ModeAll {
		return s.cfg.Async
	}
	return s.mem.inTransition()
}

// fetchPrevious asks the holders of id under the recent views (in ModeAll:
// every ready peer) for their copies and merges what they have. It reports whether any answered with a
// copy.
func (s *Store) fetchPrevious(ctx context.Context, id string) bool {
	cur := s.mem.view()
	var cands []string
	add := func(v *view) {
		for _, list := range [][]string{v.ready, v.future} {
			for _, m := range s.holders(id, list) {
				if m != s.self && !slices.Contains(cands, m) {
					cands = append(cands, m)
				}
			}
		}
	}
	if s.cfg.Mode == ModeAll {
		for _, m := range cur.ready {
			if m != s.self {
				cands = append(cands, m)
			}
		}
	} else {
		for _, v := range s.mem.recentViews() {
			add(v)
		}
		add(cur)
	}
	type answer struct{ entries []wire.Entry }
	ch := make(chan answer, len(cands))
	n := 0
	for _, m := range cands {
		addr, ok := cur.peers[m]
		if !ok {
			continue
		}
		n++
		go func() {
			var es wire.Entries
			if err := s.pc.call(ctx, addr, pathFetch, &wire.Fetch{IDs: []string{id}}, &es); err != nil {
				s.log.Debug("fetch from previous holder failed", "peer", m, "error", err)
			}
			ch <- answer{es.Items}
		}()
	}
	found := false
	for range n {
		a := <-ch
		for i := range a.entries {
			if a.entries[i].ID == id {
				s.mergeRemote(&a.entries[i], "")
				found = true
			}
		}
	}
	if found {
		s.metrics.transfers.WithLabelValues("fetched").Inc()
	}
	return found
}

// serveFetch answers a Fetch from the local table.
func (s *Store) serveFetch(f *wire.Fetch) *wire.Entries {
	out := &wire.Entries{}
	for _, id := range f.IDs {
		if x, ok := s.tab.get(id); ok && (!x.Born.IsZero() || !x.Dead.IsZero()) {
			out.Items = append(out.Items, x)
		}
	}
	return out
}

// mergeRemote merges an entry that came from a peer, moving the clock past
// its stamps.
func (s *Store) mergeRemote(x *wire.Entry, from string) mergeResult {
	s.clock.observe(incomingVersion(x).T)
	return s.tab.merge(x, from, false, s.nowNano())
}

// mergeAnswer merges the state a holder sent back in answer to our push.
func (s *Store) mergeAnswer(x *wire.Entry, holder string) {
	s.clock.observe(incomingVersion(x).T)
	s.tab.merge(x, holder, true, s.nowNano())
}

// localStatus says what the table has for id at now.
type localStatus struct {
	alive, dead, present bool
	version              wire.Stamp
	expires              int64
}

func (s *Store) status(id string, now int64) localStatus {
	var st localStatus
	s.tab.with(id, func(e *entry) *entry {
		if e != nil {
			st.present = !e.born.IsZero() || e.isTombstone()
			st.alive = e.alive(now)
			st.dead = e.isTombstone()
			st.version = e.version
			st.expires = e.expires
		}
		return e
	})
	return st
}

// applyLocal coordinates a write to id: apply it here, then replicate it.
func (s *Store) applyLocal(ctx context.Context, id string, d *session.Delta) error {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	lapses := s.lapses.Load()
	now := s.nowNano()
	st := s.status(id, now)
	if !st.present && s.fetchOnMiss() {
		if s.fetchPrevious(ctx, id) {
			st = s.status(id, s.nowNano())
		}
	}
	create := false
	if !st.alive {
		if !d.Create {
			return session.ErrNotFound
		}
		create = true
	}
	if !create && d.Empty() {
		return nil
	}
	frag := fragment(id, d, s.stamp(), create, now)
	s.tab.merge(&frag, "", false, now)
	// Targets are computed after the local apply, so a member that
	// registers while this write is in flight either got the write in its
	// transfer or is a target here.
	err := s.replicate(ctx, id, st.version, &frag)
	if errors.Is(err, errDead) {
		return session.ErrNotFound
	}
	if err == nil {
		err = s.stillHeld(id, lapses)
	}
	return err
}

// deleteLocal coordinates the deletion of id.
func (s *Store) deleteLocal(ctx context.Context, id string) error {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	lapses := s.lapses.Load()
	now := s.nowNano()
	st := s.status(id, now)
	if st.dead {
		return nil
	}
	until := max(st.expires, now) + int64(s.cfg.TombstoneTTL)
	frag := wire.Entry{ID: id, Dead: s.stamp(), DeadUntil: until}
	s.tab.merge(&frag, "", false, now)
	err := s.replicate(ctx, id, st.version, &frag)
	if errors.Is(err, errDead) {
		return nil
	}
	if err == nil {
		err = s.stillHeld(id, lapses)
	}
	return err
}

// fragment turns a delta into the entry fragment of one write stamped st.
func fragment(id string, d *session.Delta, st wire.Stamp, create bool, now int64) wire.Entry {
	x := wire.Entry{ID: id}
	if create {
		x.Born = st
		x.Created = unixNano(d.Created)
		if x.Created == 0 {
			x.Created = now
		}
	}
	keys := make([]string, 0, len(d.Set)+len(d.Del))
	for k := range d.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x.Attrs = append(x.Attrs, wire.Attr{Key: k, Stamp: st, Value: slices.Clone(d.Set[k])})
		if x.Attrs[len(x.Attrs)-1].Value == nil {
			x.Attrs[len(x.Attrs)-1].Value = []byte{}
		}
	}
	for _, k := range d.Del {
		if _, set := d.Set[k]; set {
			continue // Set wins within one delta
		}
		x.Attrs = append(x.Attrs, wire.Attr{Key: k, Stamp: st, Deleted: true})
	}
	if d.SetPrincipal {
		x.PrincipalStamp, x.Principal = st, d.Principal
	}
	if !d.Touched.IsZero() {
		x.TouchedStamp, x.Touched = st, d.Touched.UnixNano()
	}
	if !d.Expires.IsZero() {
		x.ExpiresStamp, x.Expires = st, d.Expires.UnixNano()
	}
	if create && d.Touched.IsZero() {
		x.TouchedStamp, x.Touched = st, x.Created
	}
	return x
}

func deltaToWire(d *session.Delta) wire.Delta {
	w := wire.Delta{
		Create: d.Create, Del: d.Del, SetPrincipal: d.SetPrincipal, Principal: d.Principal,
		Created: unixNano(d.Created), Touched: unixNano(d.Touched), Expires: unixNano(d.Expires),
	}
	for k, v := range d.Set {
		w.Set = append(w.Set, wire.KV{Key: k, Value: v})
	}
	return w
}

func deltaFromWire(w *wire.Delta) session.Delta {
	d := session.Delta{
		Create: w.Create, Del: w.Del, SetPrincipal: w.SetPrincipal, Principal: w.Principal,
		Created: unixTime(w.Created), Touched: unixTime(w.Touched), Expires: unixTime(w.Expires),
	}
	if len(w.Set) > 0 {
		d.Set = make(map[string][]byte, len(w.Set))
		for _, kv := range w.Set {
			d.Set[kv.Key] = kv.Value
		}
	}
	return d
}

func recordToWire(r *session.Record) *wire.Record {
	w := &wire.Record{ID: r.ID, Principal: r.Principal, Created: unixNano(r.Created), Touched: unixNano(r.Touched), Expires: unixNano(r.Expires)}
	for k, v := range r.Values {
		w.Values = append(w.Values, wire.KV{Key: k, Value: v})
	}
	return w
}

func recordFromWire(w *wire.Record) *session.Record {
	r := &session.Record{
		ID: w.ID, Principal: w.Principal, Values: make(map[string][]byte, len(w.Values)),
		Created: unixTime(w.Created), Touched: unixTime(w.Touched), Expires: unixTime(w.Expires),
	}
	for _, kv := range w.Values {
		r.Values[kv.Key] = kv.Value
	}
	return r
}
