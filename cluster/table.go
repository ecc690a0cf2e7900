package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/session"
)

// attr is one attribute with the stamp of the write that last set it.
type attr struct {
	s       wire.Stamp
	deleted bool
	v       []byte // never modified in place: a write replaces the slice
}

// entry is a node's copy of one session: a last-writer-wins map of its
// parts, each with the stamp of its last write (see docs/cluster.md,
// "Consistency"), plus the node's bookkeeping of who else holds it.
type entry struct {
	id         string
	born, dead wire.Stamp
	created    int64
	deadUntil  int64
	touchedS   wire.Stamp
	touched    int64
	expiresS   wire.Stamp
	expires    int64
	principalS wire.Stamp
	principal  string
	attrs      map[string]attr
	version    wire.Stamp // the newest stamp of any part: the session's version

	// replicated lists the peers known to hold this version; a write that
	// changes the entry clears it. syncedEpoch is the membership epoch at
	// which the sync pass last found nothing to do for the entry.
	replicated  []string
	syncedEpoch uint64
	// written is when the entry last changed here, for the hand-off grace.
	written int64
}

// isTombstone reports whether the session was deleted after (or without)
// its last creation.
func (e *entry) isTombstone() bool {
	return !e.dead.IsZero() && !e.born.After(e.dead)
}

// alive reports whether the session exists and has not expired at now.
func (e *entry) alive(now int64) bool {
	return !e.born.IsZero() && e.born.After(e.dead) && (e.expires == 0 || now < e.expires)
}

// indexed returns the principal the entry belongs in the index under, "" for
// none: only created, undeleted sessions with a principal are indexed.
func (e *entry) indexed() string {
	if e.born.IsZero() || !e.born.After(e.dead) {
		return ""
	}
	return e.principal
}

func newer(a, b wire.Stamp) wire.Stamp {
	if a.After(b) {
		return a
	}
	return b
}

// merge folds x, a fragment (one write) or a whole state, into e and
// reports whether e changed. It is commutative, associative and idempotent,
// so replicas that have merged the same writes in any order are identical.
func (e *entry) merge(x *wire.Entry) bool {
	changed := false
	if x.Born.After(e.born) {
		e.born, e.created, changed = x.Born, x.Created, true
	}
	if x.Dead.After(e.dead) {
		e.dead, changed = x.Dead, true
	}
	if x.DeadUntil > e.deadUntil {
		e.deadUntil, changed = x.DeadUntil, true
	}
	if x.TouchedStamp.After(e.touchedS) {
		e.touchedS, e.touched, changed = x.TouchedStamp, x.Touched, true
	}
	if x.ExpiresStamp.After(e.expiresS) {
		e.expiresS, e.expires, changed = x.ExpiresStamp, x.Expires, true
	}
	if x.PrincipalStamp.After(e.principalS) {
		e.principalS, e.principal, changed = x.PrincipalStamp, x.Principal, true
	}
	for _, a := range x.Attrs {
		cur, ok := e.attrs[a.Key]
		if ok && !a.Stamp.After(cur.s) {
			continue
		}
		if e.attrs == nil {
			e.attrs = make(map[string]attr, len(x.Attrs))
		}
		e.attrs[a.Key] = attr{s: a.Stamp, deleted: a.Deleted, v: a.Value}
		changed = true
	}
	if changed {
		e.prune()
	}
	return changed
}

// prune drops the parts that no longer count: everything of a deleted
// session, and parts older than the current incarnation's creation (the
// attributes of an earlier, expired or deleted, life of the id).
func (e *entry) prune() {
	if e.isTombstone() {
		e.attrs = nil
		e.principal, e.principalS = "", wire.Stamp{}
		e.touched, e.touchedS = 0, wire.Stamp{}
		e.expires, e.expiresS = 0, wire.Stamp{}
		e.created = 0
		e.version = e.dead
		return
	}
	v := newer(e.born, e.dead)
	floor := e.born
	for k, a := range e.attrs {
		if a.s.Compare(floor) < 0 {
			delete(e.attrs, k)
			continue
		}
		v = newer(v, a.s)
	}
	if e.principalS.Compare(floor) < 0 {
		e.principal, e.principalS = "", wire.Stamp{}
	}
	if e.touchedS.Compare(floor) < 0 {
		e.touched, e.touchedS = 0, wire.Stamp{}
	}
	if e.expiresS.Compare(floor) < 0 {
		e.expires, e.expiresS = 0, wire.Stamp{}
	}
	v = newer(v, newer(e.principalS, newer(e.touchedS, e.expiresS)))
	e.version = v
}

// state returns e's whole state. Values are shared, not copied: table
// values are never modified in place.
func (e *entry) state() wire.Entry {
	x := wire.Entry{
		ID: e.id, Born: e.born, Created: e.created, Dead: e.dead, DeadUntil: e.deadUntil,
		TouchedStamp: e.touchedS, Touched: e.touched, ExpiresStamp: e.expiresS, Expires: e.expires,
		PrincipalStamp: e.principalS, Principal: e.principal,
	}
	if len(e.attrs) > 0 {
		x.Attrs = make([]wire.Attr, 0, len(e.attrs))
		for _, k := range slices.Sorted(maps.Keys(e.attrs)) {
			a := e.attrs[k]
			x.Attrs = append(x.Attrs, wire.Attr{Key: k, Stamp: a.s, Deleted: a.deleted, Value: a.v})
		}
	}
	return x
}

// record returns the session as the caller's own copy.
func (e *entry) record() *session.Record {
	r := &session.Record{
		ID:        e.id,
		Values:    make(map[string][]byte, len(e.attrs)),
		Principal: e.principal,
		Created:   unixTime(e.created),
		Touched:   unixTime(e.touched),
		Expires:   unixTime(e.expires),
	}
	for k, a := range e.attrs {
		if !a.deleted {
			r.Values[k] = slices.Clone(a.v)
			if r.Values[k] == nil {
				r.Values[k] = []byte{}
			}
		}
	}
	return r
}

// expired reports whether the table may forget e at now: a tombstone past
// its horizon, a session past its deadline, or a fragment whose base never
// arrived.
func (e *entry) expired(now int64, orphanTTL time.Duration) bool {
	switch {
	case e.isTombstone():
		return now >= e.deadUntil
	case e.born.IsZero():
		return now-e.written > int64(orphanTTL)
	default:
		return e.expires != 0 && now >= e.expires
	}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

const shardCount = 64

// table is a node's local copy of the sessions it holds, sharded so that
// writes to different sessions rarely wait for each other.
type table struct {
	seed   maphash.Seed
	shards [shardCount]shard

	idxMu sync.Mutex
	idx   map[string]map[string]struct{} // principal → ids
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
}

func newTable() *table {
	t := &table{seed: maphash.MakeSeed(), idx: make(map[string]map[string]struct{})}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
	}
	return t
}

func (t *table) shard(id string) *shard {
	return &t.shards[maphash.String(t.seed, id)%shardCount]
}

// with runs fn on id's entry (nil when absent) under its shard lock. fn
// returns the entry to keep (nil removes it). The principal index follows.
func (t *table) with(id string, fn func(e *entry) *entry) {
	sh := t.shard(id)
	sh.mu.Lock()
	e := sh.m[id]
	before := ""
	if e != nil {
		before = e.indexed()
	}
	e = fn(e)
	after := ""
	if e == nil {
		delete(sh.m, id)
	} else {
		sh.m[id] = e
		after = e.indexed()
	}
	sh.mu.Unlock()
	if before != after {
		t.reindex(id, before, after)
	}
}

func (t *table) reindex(id, before, after string) {
	t.idxMu.Lock()
	defer t.idxMu.Unlock()
	if before != "" {
		if ids := t.idx[before]; ids != nil {
			delete(ids, id)
			if len(ids) == 0 {
				delete(t.idx, before)
			}
		}
	}
	if after != "" {
		ids := t.idx[after]
		if ids == nil {
			ids = make(map[string]struct{})
			t.idx[after] = ids
		}
		ids[id] = struct{}{}
	}
}

// principalIDs returns the ids indexed under principal (alive or not; the
// caller filters).
func (t *table) principalIDs(principal string) []string {
	t.idxMu.Lock()
	defer t.idxMu.Unlock()
	return slices.Collect(maps.Keys(t.idx[principal]))
}

// get returns a copy of id's state and whether the table has the id at all.
func (t *table) get(id string) (wire.Entry, bool) {
	var x wire.Entry
	ok := false
	t.with(id, func(e *entry) *entry {
		if e != nil {
			x, ok = e.state(), true
		}
		return e
	})
	return x, ok
}

// load returns the live session id as a caller-owned record, whether the
// table holds a tombstone for it, and whether it has it at all.
func (t *table) load(id string, now int64) (rec *session.Record, dead, present bool) {
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[id]
	if e == nil {
		return nil, false, false
	}
	if e.alive(now) {
		return e.record(), false, true
	}
	return nil, e.isTombstone(), true
}

// mergeResult says what a replica's merge found, for its answer.
type mergeResult struct {
	changed  bool
	absent   bool       // the table had no entry before
	version  wire.Stamp // the version before the merge
	dead     bool       // after the merge the entry is a tombstone
	deadS    wire.Stamp // the entry's deletion stamp after the merge
	hadNewer bool       // the local copy has parts the incoming state lacked
}

// merge folds x into id's entry, creating it when absent, and notes who
// holds the result.
//
// With fromHolder the state is a holder's answer to our push: what it adds
// came from that holder, whose writer replicates it itself, so the peers
// already known to hold our state still do.
func (t *table) merge(x *wire.Entry, from string, fromHolder bool, now int64) mergeResult {
	var r mergeResult
	t.with(x.ID, func(e *entry) *entry {
		if e == nil {
			r.absent = true
			e = &entry{id: x.ID}
		}
		r.version = e.version
		r.changed = e.merge(x)
		if r.changed {
			e.written = now
			if !fromHolder {
				e.replicated = e.replicated[:0]
			}
			e.syncedEpoch = 0
		}
		r.hadNewer = e.version.After(incomingVersion(x))
		if from != "" && !r.hadNewer {
			e.replicated = addNode(e.replicated, from)
		}
		r.dead, r.deadS = e.isTombstone(), e.dead
		return e
	})
	return r
}

// incomingVersion is the newest stamp in x.
func incomingVersion(x *wire.Entry) wire.Stamp {
	v := newer(x.Born, x.Dead)
	v = newer(v, newer(x.TouchedStamp, newer(x.ExpiresStamp, x.PrincipalStamp)))
	for _, a := range x.Attrs {
		v = newer(v, a.Stamp)
	}
	return v
}

func addNode(list []string, n string) []string {
	if slices.Contains(list, n) {
		return list
	}
	return append(list, n)
}

// version returns id's current version (zero when absent).
func (t *table) version(id string) wire.Stamp {
	var v wire.Stamp
	t.with(id, func(e *entry) *entry {
		if e != nil {
			v = e.version
		}
		return e
	})
	return v
}

// markReplicated records that node holds id at version v (when the entry
// is still at v).
func (t *table) markReplicated(id string, v wire.Stamp, node string) {
	t.with(id, func(e *entry) *entry {
		if e != nil && e.version == v {
			e.replicated = addNode(e.replicated, node)
		}
		return e
	})
}

// each calls fn for every entry under its shard's lock, one shard at a
// time; fn must not call back into the table.
func (t *table) each(fn func(e *entry)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			fn(e)
		}
		sh.mu.Unlock()
	}
}

// gc forgets expired sessions, old tombstones and orphan fragments.
func (t *table) gc(now int64, orphanTTL time.Duration) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		var drop []*entry
		sh.mu.Lock()
		for id, e := range sh.m {
			if e.expired(now, orphanTTL) {
				delete(sh.m, id)
				drop = append(drop, e)
			}
		}
		sh.mu.Unlock()
		for _, e := range drop {
			if p := e.indexed(); p != "" {
				t.reindex(e.id, p, "")
			}
		}
		n += len(drop)
	}
	return n
}

// digest hashes the state of every session the table holds (live ones
// and tombstones), ignoring bookkeeping: two replicas with equal digests
// hold the same sessions with the same contents.
func (t *table) digest(now int64, include func(id string) bool) [32]byte {
	type item struct {
		id string
		h  [32]byte
	}
	var items []item
	t.each(func(e *entry) {
		if e.born.IsZero() && !e.isTombstone() || e.expired(now, time.Hour) {
			return
		}
		if include != nil && !include(e.id) {
			return
		}
		x := e.state()
		items = append(items, item{e.id, sha256.Sum256(wire.Marshal(&wire.Entries{Items: []wire.Entry{x}}))})
	})
	slices.SortFunc(items, func(a, b item) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(items)))
	h.Write(n[:])
	for _, it := range items {
		h.Write(it.h[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// count reports how many sessions and tombstones the table holds.
func (t *table) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
