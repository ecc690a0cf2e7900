package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// netFilter cuts links between loopback hosts, for the gossip and the
// replication traffic of every node that uses it.
type netFilter struct {
	mu    sync.Mutex
	cut   map[[2]string]bool // unordered host pairs
	alone map[string]bool    // hosts cut from everyone (a frozen node)
}

func newNetFilter() *netFilter {
	return &netFilter{cut: map[[2]string]bool{}, alone: map[string]bool{}}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (f *netFilter) blocked(a, b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return a != b && (f.alone[a] || f.alone[b] || f.cut[pair(a, b)])
}

// partition cuts every host of side from every host not in it.
func (f *netFilter) partition(side []string, all []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range side {
		for _, b := range all {
			if !slices.Contains(side, b) {
				f.cut[pair(a, b)] = true
			}
		}
	}
}

func (f *netFilter) isolate(host string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alone[host] = on
}

func (f *netFilter) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = map[[2]string]bool{}
	f.alone = map[string]bool{}
}

func hostPart(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// hooks returns test hooks for a node on host that obey f.
func (f *netFilter) hooks(host string, mlTweak func(*memberlist.Config)) *testHooks {
	return &testHooks{
		gossip:     func(t memberlist.Transport) memberlist.Transport { return newFilterTransport(t, host, f) },
		blockPeer:  func(addr string) bool { return f.blocked(host, hostPart(addr)) },
		memberlist: mlTweak,
	}
}

// filterTransport drops gossip to and from cut hosts.
type filterTransport struct {
	memberlist.Transport
	host    string
	f       *netFilter
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
}

func newFilterTransport(inner memberlist.Transport, host string, f *netFilter) *filterTransport {
	t := &filterTransport{Transport: inner, host: host, f: f,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		for {
			select {
			case p := <-inner.PacketCh():
				if t.f.blocked(t.host, hostPart(p.From.String())) {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case c := <-inner.StreamCh():
				if t.f.blocked(t.host, hostPart(c.RemoteAddr().String())) {
					c.Close()
					continue
				}
				select {
				case t.streams <- c:
				case <-t.done:
					c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.f.blocked(t.host, hostPart(addr)) {
		return time.Now(), nil // lost on the wire
	}
	return t.Transport.WriteTo(b, addr)
}
func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *filterTransport) StreamCh() <-chan net.Conn           { return t.streams }
func (t *filterTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.f.blocked(t.host, hostPart(addr)) {
		time.Sleep(min(d, 50*time.Millisecond))
		return nil, errors.New("filtered: no route")
	}
	return t.Transport.DialTimeout(addr, d)
}

// Shutdown stops the inner transport first: its UDP listener waits on an
// unbuffered channel that only the forwarders drain, so stopping them first
// could leave its Shutdown waiting for ever (it hung a test for 10 minutes).
// memberlist reads PacketCh until this returns.
func (t *filterTransport) Shutdown() error {
	err := t.Transport.Shutdown()
	t.once.Do(func() { close(t.done) })
	return err
}

// readySet returns the ready members node id sees.
func (c *tcluster) readySet(id string) []string { return c.node(id).mem.view().ready }

// Memberlist never re-joins a partitioned side by itself once the other
// side's nodes are reaped (memberlist #222); the periodic re-join of seeds
// and recently failed members heals it.
func TestPartitionHeals(t *testing.T) {
	f := newNetFilter()
	c := newTCluster(t, ModeBackup, 3, func(cfg *Config) {
		cfg.hooks = f.hooks(hostPart(cfg.Bind), func(mc *memberlist.Config) {
			mc.GossipToTheDeadTime = 500 * time.Millisecond // reap fast, so only re-joining can heal
		})
	})
	id := session.NewID()
	if err := c.node("n1").Apply(ctxT(t), id, newDelta("user", "alice")); err != nil {
		t.Fatal(err)
	}
	f.partition([]string{"127.0.0.1"}, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
	waitFor(t, 15*time.Second, "both sides to declare the other dead (n1, alone, out of placement)", func() bool {
		return len(c.readySet("n1")) == 0 && c.node("n1").Ready() != nil &&
			slices.Equal(c.readySet("n2"), []string{"n2", "n3"}) && slices.Equal(c.readySet("n3"), []string{"n2", "n3"})
	})
	time.Sleep(time.Second) // past GossipToTheDeadTime: the dead are reaped
	f.heal()
	c.waitMembers()
	for _, n := range c.ids() {
		if v := mustLoad(t, c.node(n), id, "user"); v != "alice" {
			t.Errorf("after healing, via %s: user %q", n, v)
		}
	}
}

func stringsJoin(list []string) string {
	out := "["
	for i, s := range list {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out + "]"
}

// A node that crashed may come back under the same name at another address
// (memberlist #157: refused as a conflict until the old one is dead and the
// reclaim time has passed).
func TestSameNameAtNewAddress(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	l := newCounterLoad(t, c, 50)
	c.crash("n3")
	c.waitMembers()
	c.mu.Lock()
	delete(c.addrs, "n3")
	c.mu.Unlock()
	s := c.startAt("n3", "127.0.0.4:"+freePort(t, "127.0.0.4"))
	if err := s.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.waitMembers()
	for _, n := range []string{"n1", "n2"} {
		m, ok := c.node(n).mem.member("n3")
		if !ok || !m.alive || hostPart(m.gossip) != "127.0.0.4" {
			t.Errorf("%s sees n3 as %+v, want alive at 127.0.0.4", n, m)
		}
	}
	l.verify(t, c)
}

// A node that left may join again under its name and address (memberlist
// #140), and is back in placement.
func TestRejoinAfterLeave(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	l := newCounterLoad(t, c, 50)
	c.leave("n2")
	c.waitMembers()
	s := c.start("n2")
	if err := s.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.waitMembers()
	c.waitPlaced(l.ids, 2)
	l.verify(t, c)
}

// Every node restarted at once (memberlist #311: some stay "dead" in their
// peers' views): all come back and see each other.
func TestMassRestart(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	ids := c.ids()
	for _, id := range ids {
		c.crash(id)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, id := range ids {
		wg.Go(func() {
			mu.Lock()
			defer mu.Unlock()
			c.start(id)
		})
	}
	wg.Wait()
	c.waitMembers()
}

// Members that left are still counted by memberlist for GossipToTheDeadTime;
// with the default tuning that must not slow the detection of a crash (the
// suspicion timeout does not grow with confirmations or, up to 10 nodes,
// with N).
func TestCrashDetectedWhileLeftNodesStillCounted(t *testing.T) {
	c := newTCluster(t, ModeBackup, 5, nil)
	c.leave("n5")
	c.leave("n4")
	c.waitMembers()
	start := time.Now()
	c.crash("n3")
	c.waitMembers()
	t.Logf("crash of n3 known to every survivor after %v (2 nodes left just before)", time.Since(start))
	mc, err := c.node("n1").memberlistConfig(&mlDelegate{m: c.node("n1").mem})
	if err != nil {
		t.Fatal(err)
	}
	if mc.SuspicionMaxTimeoutMult != 1 {
		t.Errorf("SuspicionMaxTimeoutMult = %d, want 1 (no dependence on confirmations)", mc.SuspicionMaxTimeoutMult)
	}
	if d := time.Duration(mc.SuspicionMult) * mc.ProbeInterval; d < 1200*time.Millisecond || d > 2*time.Second {
		t.Errorf("suspicion timeout %v at N ≤ 10: want over 1.2 s (a 1 s freeze survives) and at most 2 s (3 s detection)", d)
	}
}

func freePort(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

var _ = context.Background

// A primary cut off long enough to be declared dead comes back holding a
// live copy of a session that was logged out at the backup meanwhile: the
// holders send the returning member their state, and the logout wins.
func TestLogoutWhilePrimaryWasCutOffStaysLoggedOut(t *testing.T) {
	f := newNetFilter()
	c := newTCluster(t, ModeBackup, 3, func(cfg *Config) { cfg.hooks = f.hooks(hostPart(cfg.Bind), nil) })
	ctx := ctxT(t)
	id := session.NewID()
	if err := c.node("n1").Apply(ctx, id, newDelta("user", "dave")); err != nil {
		t.Fatal(err)
	}
	primary := placement.Primary(id, c.ids())
	f.partition([]string{hostOf(primary)}, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
	var others []string
	for _, n := range c.ids() {
		if n != primary {
			others = append(others, n)
		}
	}
	waitFor(t, 15*time.Second, "the others to declare the primary dead", func() bool {
		return slices.Equal(c.readySet(others[0]), others) && slices.Equal(c.readySet(others[1]), others)
	})
	if err := c.node(others[0]).Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * c.node(others[0]).cfg.SyncInterval)
	f.heal()
	c.waitMembers()
	waitFor(t, 5*time.Second, "the logged-out session refused on every node", func() bool {
		for _, n := range c.ids() {
			if _, err := c.node(n).Load(ctx, id); !errors.Is(err, session.ErrNotFound) {
				return false
			}
		}
		return true
	})
}

// A pause that nobody acted on (the whole machine starved, a long GC the
// peers did not notice) costs one check, not a re-sync: the node asks its
// peers, learns they never marked it dead, and goes on serving.
func TestPauseNobodyActedOnKeepsServing(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	ctx := ctxT(t)
	s := c.node("n1")
	var id string
	for {
		id = session.NewID()
		if placement.Primary(id, c.ids()) == "n1" {
			break
		}
	}
	if err := s.Apply(ctx, id, newDelta("user", "erin")); err != nil {
		t.Fatal(err)
	}
	// Pretend the pause watch last ran 3 s ago.
	s.lastTick.Store(int64(time.Since(s.started) - 3*time.Second))
	if !s.paused() {
		t.Fatal("paused() = false after a simulated 3 s pause")
	}
	if v := mustLoad(t, s, id, "user"); v != "erin" {
		t.Fatalf("Load after the pause check: %q", v)
	}
	if s.paused() || s.mem.selfState() != stateReady || s.Ready() != nil {
		t.Fatalf("after a pause nobody acted on: paused %v, state %v, Ready %v; want serving", s.paused(), s.mem.selfState(), s.Ready())
	}
}
