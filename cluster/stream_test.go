package cluster

import (
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// localValue returns key's value in s's own copy of id, without routing.
func localValue(s *Store, id, key string) (string, bool) {
	x, ok := s.tab.get(id)
	if !ok {
		return "", false
	}
	for _, a := range x.Attrs {
		if a.Key == key && !a.Deleted {
			return string(a.Value), true
		}
	}
	return "", false
}

// writeAtPrimary creates n sessions whose primary is from and whose backup
// is to, writes each count times at the primary, and returns their ids.
func writeAtPrimary(t *testing.T, c *tcluster, from, to string, n, count int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		id := session.NewID()
		if r := placement.Rank(id, c.ids(), 2); r[0] != from || r[1] != to {
			continue
		}
		s := c.node(from)
		if err := s.Apply(ctxT(t), id, newDelta("counter", "0")); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= count; i++ {
			if err := s.Apply(ctxT(t), id, setDelta("counter", strconv.Itoa(i))); err != nil {
				t.Fatalf("write %d of %s: %v", i, fingerprint(id), err)
			}
		}
		ids = append(ids, id)
	}
	return ids
}

// Sync writes to one peer travel on one long-lived stream: 110
// acknowledged writes open one stream, and the backup holds every one.
func TestWritesToAPeerShareOneStream(t *testing.T) {
	c := newTCluster(t, ModeBackup, 2, nil)
	before := testutilCount(c.node("n1").metrics.streams)
	ids := writeAtPrimary(t, c, "n1", "n2", 10, 10)
	for _, id := range ids {
		if v, ok := localValue(c.node("n2"), id, "counter"); v != "10" {
			t.Fatalf("backup n2 holds counter %q (present %v) of %s, want 10", v, ok, fingerprint(id))
		}
	}
	if got := testutilCount(c.node("n1").metrics.streams) - before; got != 1 {
		t.Errorf("n1 opened %v write streams for 110 writes to one peer, want 1", got)
	}
}

// A peer that serves no write streams (an older version during a rolling
// upgrade answers 404) still gets every write, as requests of their own.
func TestWritesReachAPeerWithoutStreams(t *testing.T) {
	c := newTCluster(t, ModeBackup, 2, func(cfg *Config) {
		if cfg.NodeID == "n2" {
			cfg.hooks = &testHooks{noWriteStreams: true}
		}
	})
	ids := writeAtPrimary(t, c, "n1", "n2", 5, 5)
	for _, id := range ids {
		if v, ok := localValue(c.node("n2"), id, "counter"); v != "5" {
			t.Fatalf("backup n2 holds counter %q (present %v) of %s, want 5", v, ok, fingerprint(id))
		}
	}
	if got := testutilCount(c.node("n1").metrics.streams); got != 0 {
		t.Errorf("n1 counts %v write streams to a peer without them, want 0", got)
	}
}

// A stream broken by the crash of its peer is replaced: after the backup
// restarts (same name, same addresses) writes reach it again on a new
// stream, and none is acknowledged that it does not hold.
func TestWriteStreamIsReopenedAfterPeerRestart(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	first := writeAtPrimary(t, c, "n1", "n2", 3, 3)
	opened := testutilCount(c.node("n1").metrics.streams)
	c.crash("n2")
	c.waitMembers()
	c.start("n2")
	c.waitMembers()
	c.waitPlaced(first, 2)
	ids := writeAtPrimary(t, c, "n1", "n2", 3, 3)
	for _, id := range append(first, ids...) {
		if v, _ := localValue(c.node("n2"), id, "counter"); v != "3" {
			t.Fatalf("restarted backup n2 holds counter %q of %s, want 3", v, fingerprint(id))
		}
	}
	if got := testutilCount(c.node("n1").metrics.streams); got <= opened {
		t.Errorf("n1 opened no new write stream after its peer restarted (%v before, %v after)", opened, got)
	}
}

// A batch sent after its peer restarted at the old address reaches it:
// the stream from before the restart broke while idle, and the batch goes
// again on a new stream instead of counting the peer as unreachable
// (which in all mode would acknowledge a write without the copy the
// restarted peer serves reads from).
func TestBatchAfterPeerRestartReachesIt(t *testing.T) {
	// n2 comes back on its old replication address, as roam node does.
	peer, err := proc.FreeAddr("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	c := newTCluster(t, ModeAll, 2, func(cfg *Config) {
		if cfg.NodeID == "n2" {
			cfg.PeerBind = peer
		}
	})
	n1 := c.node("n1")
	pb := &peerBatch{addr: c.node("n2").PeerAddr()}
	var ws *writeStream
	defer func() {
		if ws != nil {
			ws.close()
		}
	}()
	send := func(counter string) error {
		id := session.NewID()
		d := newDelta("counter", counter)
		if err := n1.applyLocal(ctxT(t), id, &d); err != nil {
			t.Fatal(err)
		}
		x, _ := n1.tab.get(id)
		var res wire.Results
		err := n1.batch.sendBatch(pb, &ws, &wire.Writes{From: "n1", Items: []wire.Write{{Full: true, Entry: x}}}, &res)
		if err == nil && (len(res.Items) != 1 || res.Items[0].Status != wire.StatusOK) {
			t.Fatalf("answer %+v, want one OK", res.Items)
		}
		return err
	}
	if err := send("1"); err != nil {
		t.Fatal(err)
	}
	c.crash("n2")
	c.start("n2")
	c.waitMembers()
	if ws == nil {
		t.Fatal("the stream was dropped before its next use; the test needs it stale")
	}
	if err := send("2"); err != nil {
		t.Errorf("first batch after the peer restarted: %v, want it delivered on a new stream", err)
	}
}

// Streams that fail to open, to a port nobody listens on or to one that
// accepts and never answers, leave no goroutine behind, and each failure
// is classified: refused is unreachable, silence is a timeout.
func TestFailedWriteStreamsLeakNothing(t *testing.T) {
	c := newTCluster(t, ModeBackup, 1, func(cfg *Config) { cfg.ReplicationTimeout = 200 * time.Millisecond })
	n1 := c.node("n1")
	refused, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var heldMu sync.Mutex
	var held []net.Conn
	closeHeld := func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, cn := range held {
			cn.Close()
		}
		held = nil
	}
	defer closeHeld()    // second: the connections it accepted
	defer silent.Close() // first: no more of them
	go func() {
		for {
			cn, err := silent.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, cn)
			heldMu.Unlock()
		}
	}()
	before := runtime.NumGoroutine()
	for range 10 {
		for _, tc := range []struct {
			addr string
			is   func(error) bool
			want string
		}{{refused, isUnreachable, "unreachable"}, {silent.Addr().String(), isTimeout, "a timeout"}} {
			ws := n1.pc.openWriteStream(tc.addr)
			var res wire.Results
			err := ws.roundTrip(&wire.Writes{From: "n1"}, &res)
			if err == nil || !tc.is(err) {
				t.Fatalf("stream to %s: %v, want %s", tc.addr, err, tc.want)
			}
		}
	}
	closeHeld()
	waitFor(t, 5*time.Second, "goroutines back to their number before the failed streams", func() bool {
		return runtime.NumGoroutine() <= before+3
	})
}

// A batch too large for a frame is the sender's error, not a sign that the
// peer is gone (which would let a write be acknowledged without its copy),
// and the stream it was meant for is closed, not leaked.
func TestOversizedBatchIsTheSendersError(t *testing.T) {
	c := newTCluster(t, ModeBackup, 2, nil)
	n1 := c.node("n1")
	before := runtime.NumGoroutine()
	ws := n1.pc.openWriteStream(c.node("n2").PeerAddr())
	huge := wire.Write{Full: true, Entry: wire.Entry{ID: "x", Attrs: []wire.Attr{{Key: "k", Value: make([]byte, maxFrame+1)}}}}
	var res wire.Results
	err := ws.roundTrip(&wire.Writes{From: "n1", Items: []wire.Write{huge}}, &res)
	if !errors.Is(err, wire.ErrTooLarge) || isUnreachable(err) || isTimeout(err) {
		t.Fatalf("oversized batch: %v, want wire.ErrTooLarge, neither unreachable nor a timeout", err)
	}
	waitFor(t, 5*time.Second, "goroutines back to their number before the stream", func() bool {
		return runtime.NumGoroutine() <= before+3
	})
}
