package cluster

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/session"
)

func st(t uint64, node string) wire.Stamp { return wire.Stamp{T: t, Node: node} }

// writes is a history of fragments to one session from two coordinators.
func history() []wire.Entry {
	return []wire.Entry{
		{ID: "s", Born: st(10, "a"), Created: 1, Attrs: []wire.Attr{{Key: "user", Stamp: st(10, "a"), Value: []byte("alice")}}},
		{ID: "s", Attrs: []wire.Attr{{Key: "counter", Stamp: st(11, "a"), Value: []byte("1")}}},
		{ID: "s", Attrs: []wire.Attr{{Key: "theme", Stamp: st(12, "b"), Value: []byte("dark")}}},
		{ID: "s", Attrs: []wire.Attr{{Key: "counter", Stamp: st(13, "b"), Value: []byte("2")}}},
		{ID: "s", Attrs: []wire.Attr{{Key: "counter", Stamp: st(13, "a"), Value: []byte("3")}}}, // same T: node id breaks the tie
		{ID: "s", Attrs: []wire.Attr{{Key: "theme", Stamp: st(14, "a"), Deleted: true}}},
		{ID: "s", PrincipalStamp: st(15, "b"), Principal: "alice", ExpiresStamp: st(15, "b"), Expires: 99},
	}
}

func TestMergeIsOrderIndependent(t *testing.T) {
	h := history()
	want := entry{id: "s"}
	for i := range h {
		want.merge(&h[i])
	}
	if string(want.attrs["counter"].v) != "2" {
		t.Fatalf("counter after concurrent writes at T=13 from a and b = %q, want b's (the higher node id)", want.attrs["counter"].v)
	}
	if !want.attrs["theme"].deleted || string(want.attrs["user"].v) != "alice" {
		t.Fatalf("merged attrs %+v: want theme deleted, user alice", want.attrs)
	}
	for range 200 {
		perm := rand.Perm(len(h))
		got := entry{id: "s"}
		for _, i := range perm {
			got.merge(&h[i])
			got.merge(&h[i]) // idempotent
		}
		if a, b := wire.Marshal(&wire.Entries{Items: []wire.Entry{got.state()}}), wire.Marshal(&wire.Entries{Items: []wire.Entry{want.state()}}); string(a) != string(b) {
			t.Fatalf("merge order %v gave a different state", perm)
		}
	}
}

func TestLogoutIsNotUndoneByStaleReplica(t *testing.T) {
	h := history()
	stale := entry{id: "s"}
	for i := range h {
		stale.merge(&h[i])
	}
	staleState := stale.state()
	tomb := wire.Entry{ID: "s", Dead: st(20, "a"), DeadUntil: 1000}
	late := wire.Entry{ID: "s", Attrs: []wire.Attr{{Key: "counter", Stamp: st(25, "b"), Value: []byte("9")}}, TouchedStamp: st(25, "b"), Touched: 5}

	for _, order := range [][]*wire.Entry{
		{&staleState, &tomb, &late},
		{&tomb, &staleState, &late},
		{&late, &tomb, &staleState},
		{&tomb, &late, &staleState},
	} {
		e := entry{id: "s"}
		for _, x := range order {
			e.merge(x)
		}
		if e.alive(0) || !e.isTombstone() {
			t.Fatalf("after a deletion, merging a stale full copy and a later non-creating write left the session alive: %+v", e)
		}
		if len(e.attrs) != 0 || e.principal != "" {
			t.Fatalf("tombstone keeps data: %+v", e)
		}
	}
	// Only a creation stamped after the deletion starts the id afresh, with
	// none of the old values.
	e := entry{id: "s"}
	e.merge(&staleState)
	e.merge(&tomb)
	e.merge(&wire.Entry{ID: "s", Born: st(30, "b"), Created: 2, Attrs: []wire.Attr{{Key: "fresh", Stamp: st(30, "b"), Value: []byte("1")}}})
	if !e.alive(0) || len(e.attrs) != 1 {
		t.Fatalf("a creation after the deletion: alive %v attrs %v, want alive with only the new attribute", e.alive(0), e.attrs)
	}
}

func TestTombstoneOutlivesTheSession(t *testing.T) {
	c := newTCluster(t, ModeBackup, 1, func(cfg *Config) { cfg.TombstoneTTL = time.Hour })
	s := c.node("n1")
	id := session.NewID()
	d := newDelta("user", "alice")
	d.Expires = time.Now().Add(3 * time.Hour)
	if err := s.Apply(ctxT(t), id, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	x, ok := s.tab.get(id)
	if !ok || x.Dead.IsZero() {
		t.Fatal("no tombstone after Delete")
	}
	if until := time.Unix(0, x.DeadUntil); until.Before(d.Expires.Add(59 * time.Minute)) {
		t.Fatalf("tombstone kept until %v, want at least the session's deadline plus TombstoneTTL (%v)", until, d.Expires.Add(time.Hour))
	}
	// GC keeps it before its horizon and drops it after.
	if n := s.tab.gc(time.Now().UnixNano(), time.Minute); n != 0 {
		t.Fatalf("gc dropped %d entries before the tombstone horizon", n)
	}
	if n := s.tab.gc(x.DeadUntil, time.Minute); n != 1 {
		t.Fatalf("gc at the horizon dropped %d entries, want the tombstone", n)
	}
}

func TestStaleReplicaPushCannotReviveLoggedOutSession(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	ctx := ctxT(t)
	id := session.NewID()
	if err := c.node("n1").Apply(ctx, id, newDelta("user", "alice")); err != nil {
		t.Fatal(err)
	}
	stale, _ := c.node(c.holdersOf(id)[0]).tab.get(id)
	if err := c.node("n2").Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	// A late transfer of the pre-logout state reaches every node.
	for _, n := range c.ids() {
		res := c.node(n).serveWrites(&wire.Writes{From: "ghost", Items: []wire.Write{{Full: true, Entry: stale}}})
		_ = res
	}
	for _, n := range c.ids() {
		wantNotFound(t, c.node(n), id)
	}
}
