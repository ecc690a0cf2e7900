package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberState is a node's phase, gossiped in its memberlist metadata.
type memberState uint8

const (
	stateJoining memberState = iota + 1 // pulling its state; holds writes but serves nothing
	stateReady                          // in placement
	stateLeaving                        // handing off; out of placement
)

func (s memberState) String() string {
	switch s {
	case stateJoining:
		return "joining"
	case stateReady:
		return "ready"
	case stateLeaving:
		return "leaving"
	}
	return "unknown"
}

// metaVersion is the version of the metadata layout.
const metaVersion = 1

// meta is what a node gossips about itself: its phase, its replication
// address, and the placement settings every member must share.
type meta struct {
	state    memberState
	mode     Mode
	backups  int
	peerAddr string
}

func (m meta) encode() []byte {
	mode := byte('b')
	if m.mode == ModeAll {
		mode = 'a'
	}
	return append([]byte{metaVersion, byte(m.state), mode, byte(m.backups)}, m.peerAddr...)
}

var errBadMeta = errors.New("cluster: bad member metadata")

func decodeMeta(b []byte) (meta, error) {
	if len(b) < 5 || b[0] != metaVersion {
		return meta{}, errBadMeta
	}
	m := meta{state: memberState(b[1]), backups: int(b[3]), peerAddr: string(b[4:])}
	switch b[2] {
	case 'b':
		m.mode = ModeBackup
	case 'a':
		m.mode = ModeAll
	default:
		return meta{}, errBadMeta
	}
	if m.state < stateJoining || m.state > stateLeaving {
		return meta{}, errBadMeta
	}
	if _, _, err := net.SplitHostPort(m.peerAddr); err != nil {
		return meta{}, errBadMeta
	}
	return m, nil
}

// member is what this node knows of another.
type member struct {
	name   string
	gossip string // host:port
	meta
	alive bool
	left  bool // its last departure was a graceful leave
	// tookOver is whether this node saw half of the cluster when it last
	// marked the member dead: then it, or its side, may have served the
	// member's sessions in its place.
	tookOver bool
	since    time.Time // when alive last changed
	downAt   time.Time // when it was last marked dead or left
}

// view is one immutable snapshot of the membership, shared by every
// request that reads it.
type view struct {
	epoch  uint64
	ready  []string          // members in placement, sorted
	future []string          // ready plus joining, minus leaving: the placement once joins finish
	peers  map[string]string // every live member but this node → replication address
	at     time.Time
}

// membership tracks the cluster on top of memberlist.
type membership struct {
	s    *Store
	ml   *memberlist.Memberlist
	self string

	mu      sync.Mutex
	members map[string]*member
	hellos  map[string]hello // joiners that announced themselves before gossip did
	// returned lists members that came back from dead without restarting
	// (still "ready": a paused process, a healed partition). Their copies
	// may be stale, so every holder pushes them its state (see syncPass).
	returned map[string]time.Time
	state    memberState
	epoch    uint64
	recent   []replaced // views replaced within the last TransitionWindow, oldest first

	// quorate is whether this node sees at least half of the members it
	// knows (see Config.DeadMemberTTL); seen and all are the counts.
	quorate   atomic.Bool
	seen, all int
	// contacts maps a member's name to when this node last heard from it
	// directly (*atomic.Int64, unix ns): a probe it acknowledged, a peer
	// call it made here.
	contacts sync.Map
	// owed is len(returned), read without the lock on every routed call.
	owed atomic.Int32
	// readyAt is when this node last entered placement (unix ns).
	readyAt atomic.Int64

	cur     atomic.Pointer[view]
	changed chan struct{} // signalled (non-blocking) when the view changes
	next    chan struct{} // closed (and replaced) when the view changes
}

// replaced is a view and when it stopped being current.
type replaced struct {
	v     *view
	until time.Time
}

type hello struct {
	gossip, peer string
	at           time.Time
}

// memberlistConfig builds the tuned memberlist configuration; see
// docs/cluster.md, "Failure detection".
func (s *Store) memberlistConfig(d *mlDelegate) (*memberlist.Config, error) {
	c := s.cfg
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeID
	host, port, _ := splitHostPort(c.Bind)
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if c.Advertise != "" {
		ah, ap, _ := splitHostPort(c.Advertise)
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	// With max = min the suspicion timeout does not depend on how many
	// peers confirm, so members still counted after they left (memberlist
	// counts dead nodes until GossipToTheDeadTime) cannot stretch it.
	mc.SuspicionMaxTimeoutMult = 1
	mc.GossipInterval = 100 * time.Millisecond
	mc.GossipNodes = 4
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 5 * time.Second
	mc.TCPTimeout = 2 * time.Second
	// A node that crashed and came back at a new address may take its
	// name back once it has been dead this long (memberlist #157).
	mc.DeadNodeReclaimTime = time.Second
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Ping = d
	mc.Logger = log.New(&mlLogWriter{l: c.Logger.With("component", "memberlist")}, "", 0)
	if len(c.Secret) > 0 {
		mc.SecretKey = deriveKey(c.Secret, "gossip", 32)
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	if c.hooks != nil && c.hooks.memberlist != nil {
		c.hooks.memberlist(mc)
	}
	if c.hooks != nil && c.hooks.gossip != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip transport: %w", err)
		}
		mc.Transport = c.hooks.gossip(nt)
	}
	return mc, nil
}

// mlLogWriter routes memberlist's log lines to slog at their level.
type mlLogWriter struct{ l *slog.Logger }

func (w *mlLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		level = slog.LevelWarn // memberlist calls routine conflicts and failed pushes errors
	case bytes.Contains(p, []byte("[WARN]")):
		level = slog.LevelInfo
	case bytes.Contains(p, []byte("[INFO]")):
		level = slog.LevelInfo
	}
	w.l.Log(nil, level, msg)
	return len(p), nil
}

// mlDelegate implements memberlist's delegate interfaces for membership.
type mlDelegate struct{ m *membership }

func (d *mlDelegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	st := d.m.state
	d.m.mu.Unlock()
	b := meta{state: st, mode: d.m.s.cfg.Mode, backups: d.m.s.cfg.Backups, peerAddr: d.m.s.peerAddr}.encode()
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *mlDelegate) NotifyMsg([]byte)                           {}
func (d *mlDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *mlDelegate) LocalState(join bool) []byte                { return nil }
func (d *mlDelegate) MergeRemoteState(buf []byte, join bool)     {}

// NotifyAlive refuses members whose placement settings differ from ours:
// they would compute other primaries for the same ids.
func (d *mlDelegate) NotifyAlive(n *memberlist.Node) error {
	if n.Name == d.m.self {
		return nil
	}
	m, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("member %s: %w", n.Name, err)
	}
	cfg := d.m.s.cfg
	if m.mode != cfg.Mode || (m.mode == ModeBackup && m.backups != cfg.Backups) {
		return fmt.Errorf("member %s runs mode %s with %d backups, this node %s with %d", n.Name, m.mode, m.backups, cfg.Mode, cfg.Backups)
	}
	return nil
}

// AckPayload and NotifyPingComplete make mlDelegate memberlist's
// PingDelegate: every acknowledged probe renews the lease (inContact).
func (d *mlDelegate) AckPayload() []byte { return nil }
func (d *mlDelegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.m.contact(n.Name)
}

func (d *mlDelegate) NotifyJoin(n *memberlist.Node)   { d.m.observe(n, true) }
func (d *mlDelegate) NotifyUpdate(n *memberlist.Node) { d.m.observe(n, true) }
func (d *mlDelegate) NotifyLeave(n *memberlist.Node)  { d.m.observe(n, false) }

func newMembership(s *Store) *membership {
	m := &membership{
		s:        s,
		self:     s.cfg.NodeID,
		members:  make(map[string]*member),
		hellos:   make(map[string]hello),
		returned: make(map[string]time.Time),
		state:    stateJoining,
		changed:  make(chan struct{}, 1),
		next:     make(chan struct{}),
	}
	m.cur.Store(&view{peers: map[string]string{}, at: s.cfg.Now()})
	m.quorate.Store(true)
	return m
}

// observe records a memberlist event about n.
func (m *membership) observe(n *memberlist.Node, alive bool) {
	if n.Name == m.self {
		return
	}
	md, err := decodeMeta(n.Meta)
	if err != nil && alive {
		m.s.log.Warn("ignoring member with bad metadata", "member", n.Name)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[n.Name]
	if mem == nil {
		mem = &member{name: n.Name}
		m.members[n.Name] = mem
	}
	if mem.alive != alive {
		if alive && !mem.since.IsZero() && err == nil && md.state == stateReady {
			m.returned[n.Name] = m.s.cfg.Now()
			m.owed.Store(int32(len(m.returned)))
			m.s.log.Info("member came back without restarting; sending it our state", "member", n.Name)
			if m.state == stateReady {
				// A partition healed or a pause ended: if the member's
				// side declared us dead meanwhile, our copies may be
				// stale too. Check before serving again.
				m.s.checkDeclaredDead(m.s.readySince(), "a member came back")
			}
		}
		mem.since = m.s.cfg.Now()
		if !alive {
			mem.downAt = mem.since
		}
		// memberlist's NotifyLeave passes a Node whose State field it never
		// updates (its nodeState.State shadows it), so a graceful leave is
		// known by the phase the leaver gossiped before it went:
		// stateLeaving, set by Close before the hand-off.
		mem.left = !alive && (n.State == memberlist.StateLeft || (err == nil && md.state == stateLeaving) || mem.meta.state == stateLeaving)
		if alive {
			m.s.log.Info("member up", "member", n.Name, "addr", n.Address(), "state", md.state)
		} else {
			m.s.log.Info("member down", "member", n.Name, "addr", n.Address(), "left", mem.left)
		}
	}
	wentDown := mem.alive && !alive
	mem.alive = alive
	if wentDown {
		m.countLocked(m.s.cfg.Now())
		mem.tookOver = m.quorate.Load()
	}
	mem.gossip = n.Address()
	if err == nil {
		mem.meta = md
	}
	if alive {
		delete(m.hellos, n.Name)
	}
	m.rebuildLocked()
}

// registerHello records a joiner that announced itself. It reports whether
// this node's memberlist already lists the joiner alive at its address.
func (m *membership) registerHello(h *helloMsg) (seesYou bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mem := m.members[h.node]; mem != nil && mem.alive {
		return mem.gossip == h.gossip
	}
	m.hellos[h.node] = hello{gossip: h.gossip, peer: h.peer, at: m.s.cfg.Now()}
	m.rebuildLocked()
	return false
}

type helloMsg struct{ node, gossip, peer string }

// setState changes this node's phase and gossips it.
func (m *membership) setState(st memberState) {
	m.mu.Lock()
	m.state = st
	if st == stateReady {
		m.readyAt.Store(m.s.cfg.Now().UnixNano())
	}
	m.rebuildLocked()
	m.mu.Unlock()
	if m.ml != nil {
		if err := m.ml.UpdateNode(m.s.cfg.ReplicationTimeout); err != nil {
			m.s.log.Warn("gossip state change", "state", st, "error", err)
		}
	}
}

func (m *membership) selfState() memberState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// rebuildLocked computes a new view; the caller holds m.mu.
func (m *membership) rebuildLocked() {
	now := m.s.cfg.Now()
	v := &view{peers: make(map[string]string), at: now}
	switch m.state {
	case stateReady:
		v.ready = append(v.ready, m.self)
		v.future = append(v.future, m.self)
	case stateJoining:
		v.future = append(v.future, m.self)
	}
	for name, mem := range m.members {
		if !mem.alive {
			continue
		}
		v.peers[name] = mem.peerAddr
		switch mem.state {
		case stateReady:
			v.ready = append(v.ready, name)
			v.future = append(v.future, name)
		case stateJoining:
			v.future = append(v.future, name)
		}
	}
	for name, h := range m.hellos {
		if now.Sub(h.at) > m.s.cfg.TransitionWindow {
			delete(m.hellos, name)
			continue
		}
		if mem := m.members[name]; mem != nil && !mem.alive && mem.since.After(h.at) {
			continue
		}
		if _, ok := v.peers[name]; !ok {
			v.peers[name] = h.peer
			v.future = append(v.future, name)
		}
	}
	slices.Sort(v.ready)
	slices.Sort(v.future)
	m.countLocked(now)
	old := m.cur.Load()
	if slices.Equal(old.ready, v.ready) && slices.Equal(old.future, v.future) && mapsEqual(old.peers, v.peers) {
		return
	}
	m.epoch++
	v.epoch = m.epoch
	m.recent = append(m.recent, replaced{v: old, until: now})
	i := 0
	for i < len(m.recent) && now.Sub(m.recent[i].until) > m.s.cfg.TransitionWindow {
		i++
	}
	m.recent = m.recent[i:]
	m.cur.Store(v)
	close(m.next)
	m.next = make(chan struct{})
	m.s.metrics.members(v)
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// countLocked works out whether this node sees at least half of the
// cluster: the live members (itself included) against those plus the
// members that failed within DeadMemberTTL. A member that left gracefully
// does not count, nor one never seen alive. Half is enough, so a two-node
// cluster survives either crash (and an even split serves on both sides:
// docs/cluster.md says to run an odd number of nodes). The caller holds
// m.mu.
func (m *membership) countLocked(now time.Time) {
	seen, all := 1, 1
	ttl := m.s.cfg.DeadMemberTTL
	for _, mem := range m.members {
		switch {
		case mem.alive:
			seen++
			all++
		case !mem.left && !mem.since.IsZero() && ttl > 0 && now.Sub(mem.downAt) < ttl:
			all++
		}
	}
	m.seen, m.all = seen, all
	m.quorate.Store(ttl < 0 || 2*seen >= all)
}

// contact records that name was heard from directly just now.
func (m *membership) contact(name string) {
	now := m.s.cfg.Now().UnixNano()
	if v, ok := m.contacts.Load(name); ok {
		v.(*atomic.Int64).Store(now)
		return
	}
	v := new(atomic.Int64)
	v.Store(now)
	m.contacts.Store(name, v)
}

// inContact reports whether this node heard, within d, from at least half
// of the cluster (itself included; a member that just came up counts as
// heard from). It is the lease that lets the node serve: its peers declare
// it dead, and take over its sessions, no sooner than a suspicion timeout
// after they last heard from it, so a node cut off stops serving first.
func (m *membership) inContact(d time.Duration) bool {
	if m.s.cfg.DeadMemberTTL < 0 {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.s.cfg.Now()
	m.countLocked(now)
	heard := 1
	for name, mem := range m.members {
		if !mem.alive {
			continue
		}
		t := mem.since.UnixNano()
		if v, ok := m.contacts.Load(name); ok {
			t = max(t, v.(*atomic.Int64).Load())
		}
		if now.UnixNano()-t <= int64(d) {
			heard++
		}
	}
	return 2*heard >= m.all
}

// majority reports whether this node sees at least half of the cluster,
// and the counts behind the answer.
func (m *membership) majority() (ok bool, seen, all int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countLocked(m.s.cfg.Now())
	return m.quorate.Load(), m.seen, m.all
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// view returns the current view.
func (m *membership) view() *view { return m.cur.Load() }

// waitPlacement returns a view with at least one ready member, waiting up
// to d (or until ctx ends) for one while the node is still joining: a call
// that reaches a node before its first join has completed should wait a
// moment for the membership, not fail.
func (m *membership) waitPlacement(ctx context.Context, d time.Duration) *view {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		m.mu.Lock()
		v, next := m.cur.Load(), m.next
		m.mu.Unlock()
		if len(v.ready) > 0 {
			return v
		}
		select {
		case <-next:
		case <-timer.C:
			return v
		case <-ctx.Done():
			return v
		}
	}
}

// recentViews returns the views replaced within the transition window.
func (m *membership) recentViews() []*view {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.s.cfg.Now()
	var out []*view
	for _, r := range m.recent {
		if now.Sub(r.until) <= m.s.cfg.TransitionWindow {
			out = append(out, r.v)
		}
	}
	return out
}

// inTransition reports whether the view changed within the window.
func (m *membership) inTransition() bool {
	return m.s.cfg.Now().Sub(m.view().at) <= m.s.cfg.TransitionWindow
}

// member returns a copy of what is known of name.
func (m *membership) member(name string) (member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[name]
	if mem == nil {
		return member{}, false
	}
	return *mem, true
}

// rejoinTargets lists the gossip addresses to join again: seeds and
// members that failed within the last hour, unless alive now.
func (m *membership) rejoinTargets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.s.cfg.Now()
	aliveAt := make(map[string]bool)
	for _, mem := range m.members {
		if mem.alive {
			aliveAt[mem.gossip] = true
		}
	}
	var out []string
	add := func(a string) {
		if !aliveAt[a] && !slices.Contains(out, a) && a != m.s.gossipAddr {
			out = append(out, a)
		}
	}
	for _, s := range m.s.cfg.Seeds {
		add(m.s.resolveSeed(s))
	}
	for _, mem := range m.members {
		if !mem.alive && now.Sub(mem.since) < time.Hour {
			add(mem.gossip)
		}
	}
	return out
}

// resolveSeed turns a seed into host:port with a numeric host when it
// resolves, so it can be compared with memberlist's addresses.
func (s *Store) resolveSeed(seed string) string {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return seed
	}
	if ip := net.ParseIP(host); ip != nil {
		return seed
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return seed
	}
	return net.JoinHostPort(ips[0].String(), port)
}

// Member describes one member of the cluster as this node sees it.
type Member struct {
	ID         string
	GossipAddr string
	PeerAddr   string
	State      string // "joining", "ready" or "leaving"
	Self       bool
}

func (m *membership) list() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Member{{ID: m.self, GossipAddr: m.s.gossipAddr, PeerAddr: m.s.peerAddr, State: m.state.String(), Self: true}}
	for _, mem := range m.members {
		if mem.alive {
			out = append(out, Member{ID: mem.name, GossipAddr: mem.gossip, PeerAddr: mem.peerAddr, State: mem.state.String()})
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// returnedMembers lists the members still owed a resync push.
func (m *membership) returnedMembers() map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.returned) == 0 {
		return nil
	}
	out := make(map[string]time.Time, len(m.returned))
	for k, v := range m.returned {
		out[k] = v
	}
	return out
}

// owes reports whether name came back from dead and has not been sent
// this node's state yet.
func (m *membership) owes(name string) bool {
	if m.owed.Load() == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.returned[name]
	return ok
}

// resynced clears name's debt if it was incurred at or before at.
func (m *membership) resynced(name string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.returned[name]; ok && !t.After(at) {
		delete(m.returned, name)
		m.owed.Store(int32(len(m.returned)))
	}
}

// sawDown reports whether name was marked dead (or left) at or after t
// while this node saw half of the cluster, so that its side may have taken
// over name's sessions.
func (m *membership) sawDown(name string, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[name]
	return mem != nil && !mem.downAt.IsZero() && !mem.downAt.Before(t) && mem.tookOver
}
