package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// ErrNotReady is returned by Ready while the node is still joining (its
// state transfer is not done) or already leaving.
var ErrNotReady = errors.New("cluster: node not ready")

// ErrUnavailable is returned by Store methods when no node that holds the
// session could be reached.
var ErrUnavailable = errors.New("cluster: no holder of the session reachable")

// ErrClosed is returned by Store methods after Close.
var ErrClosed = errors.New("cluster: store closed")

// errDead reports that a replica answered a write with a tombstone: the
// session was deleted concurrently and the write is void.
var errDead = errors.New("cluster: session deleted concurrently")

// maxHops bounds how often a forwarded call is passed on when views
// disagree.
const maxHops = 2

// Store is a session.Store replicated across the members of a cluster. It
// also implements session.Toucher, session.PrincipalIndex and
// session.Lister. Create one per node with New; it is safe for concurrent
// use.
type Store struct {
	cfg  Config
	log  *slog.Logger
	self string

	tab   *table
	clock hlc
	mem   *membership
	ml    *memberlist.Memberlist
	pc    *peerClient
	ps    *peerServer
	async *asyncSender
	batch *batcher

	metrics *metrics

	gossipAddr string // as advertised
	peerAddr   string // as advertised

	stripeSeed maphash.Seed
	stripes    [1024]sync.Mutex // serialise coordination of one id

	ready   atomic.Bool
	readyCh chan struct{}
	closing atomic.Bool // the peer listener refuses calls
	leaving atomic.Bool // Close has begun
	closeMu sync.Mutex
	closed  bool
	bg      context.Context
	stopBg  context.CancelFunc
	wg      sync.WaitGroup
	// sync pass bookkeeping (only the sync loop, or Close after it, runs it)
	passes       int
	countedEpoch uint64

	scatterMu sync.Mutex // guards the results of one scatter call's goroutines

	// pause detection: lastTick is when pauseWatch last ran, as time since
	// started (monotonic).
	started   time.Time
	lastTick  atomic.Int64
	pauseMu   sync.Mutex
	pauseDone chan struct{} // closed when the running pause check is done; nil when none runs
	// resyncing is set while the node is out of placement to pull its
	// share again (after a pause, or on the small side of a partition).
	resyncing atomic.Bool
	// lapsedAt is when the node lost contact with half of the cluster
	// (unix ns; 0 while in contact): it serves nothing from its copies
	// until contact is back and the check says nobody took over.
	lapsedAt atomic.Int64
	// lapses counts the times the node lost its lease or left placement to
	// re-sync: a write whose coordination spans one is not acknowledged.
	lapses atomic.Uint64

	rejoinMu sync.Mutex
	rejoined map[string]time.Time // rate limit of joins triggered by peers memberlist thinks dead
}

// New starts a cluster node: it opens the replication listener and the
// gossip endpoint, joins the seeds, and starts its state transfer in the
// background. The store serves calls at once (forwarding them to the
// holders while it joins); Ready reports when its transfer is done.
//
// New returns an error when the configuration is invalid or a listener
// cannot be opened. Seeds that do not answer are not an error: the node
// keeps trying them (after a short grace it starts alone and merges with
// the others when they appear).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.provision(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "cluster", "node", cfg.NodeID),
		self:       cfg.NodeID,
		tab:        newTable(),
		clock:      hlc{now: cfg.Now},
		stripeSeed: maphash.MakeSeed(),
		readyCh:    make(chan struct{}),
		rejoined:   make(map[string]time.Time),
	}
	var err error
	if s.metrics, err = newMetrics(cfg.Registry, cfg.NodeID, cfg.Mode); err != nil {
		return nil, err
	}
	s.mem = newMembership(s)

	var serverTLS, clientTLS *tls.Config
	if len(cfg.Secret) > 0 {
		st, ct, err := peerTLS(cfg.Secret)
		if err != nil {
			return nil, err
		}
		serverTLS, clientTLS = st, ct
	}
	ln, err := net.Listen("tcp", cfg.PeerBind)
	if err != nil {
		return nil, fmt.Errorf("cluster: replication listener on %s: %w", cfg.PeerBind, err)
	}
	s.peerAddr = advertisedPeerAddr(&cfg, ln.Addr().(*net.TCPAddr).Port)
	s.pc = newPeerClient(s, clientTLS)
	s.ps = s.startPeerServer(ln, serverTLS)

	mc, err := s.memberlistConfig(&mlDelegate{m: s.mem})
	if err != nil {
		s.ps.srv.Close()
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		s.ps.srv.Close()
		return nil, fmt.Errorf("cluster: gossip on %s: %w", cfg.Bind, err)
	}
	s.ml, s.mem.ml = ml, ml
	s.gossipAddr = ml.LocalNode().Address()

	s.bg, s.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	s.batch = newBatcher(s)
	if cfg.Async {
		s.async = newAsyncSender(s)
	}
	s.started = time.Now()
	s.lastTick.Store(0)
	s.wg.Add(5)
	go s.startup()
	go s.syncLoop()
	go s.rejoinLoop()
	go s.pauseWatch()
	go s.minorityWatch()
	s.log.Info("cluster node started", "mode", cfg.Mode, "gossip", s.gossipAddr, "peer", s.peerAddr, "seeds", cfg.Seeds, "sync", !cfg.Async, "authenticated", len(cfg.Secret) > 0)
	return s, nil
}

// advertisedPeerAddr is the replication address to gossip.
func advertisedPeerAddr(cfg *Config, port int) string {
	if cfg.PeerAdvertise != "" {
		return cfg.PeerAdvertise
	}
	host, _, _ := splitHostPort(cfg.Bind)
	if cfg.Advertise != "" {
		host, _, _ = splitHostPort(cfg.Advertise)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		// The same choice memberlist makes for an unspecified bind.
		if priv, err := sockaddr.GetPrivateIP(); err == nil && priv != "" {
			host = priv
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Ready returns nil when the node holds what it must and is in placement;
// ErrNotReady while it joins or after it starts leaving.
func (s *Store) Ready() error {
	if s.closing.Load() {
		return fmt.Errorf("%w: leaving", ErrNotReady)
	}
	if !s.ready.Load() {
		return fmt.Errorf("%w: state transfer in progress", ErrNotReady)
	}
	return nil
}

// WaitReady blocks until the node is ready or ctx is done.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: wait for ready: %w", ctx.Err())
	}
}

// NodeID returns the node's id.
func (s *Store) NodeID() string { return s.self }

// GossipAddr returns the advertised gossip address, what other nodes list
// as a seed.
func (s *Store) GossipAddr() string { return s.gossipAddr }

// PeerAddr returns the advertised replication address.
func (s *Store) PeerAddr() string { return s.peerAddr }

// Members returns the live members as this node sees them, itself included,
// sorted by id.
func (s *Store) Members() []Member { return s.mem.list() }

// Digest hashes every session (and tombstone) this node holds. In ModeAll,
// nodes that have seen the same writes have equal digests.
func (s *Store) Digest() [32]byte { return s.tab.digest(s.nowNano(), nil) }

// Close leaves the cluster gracefully: it takes the node out of placement,
// hands every session it holds to its new holders, leaves the gossip and
// stops. It returns an error when ctx ends first (the node then stops
// anyway, and the sessions whose hand-off was cut rely on their backups).
// Close is idempotent.
func (s *Store) Close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.leaving.Store(true)
	var errs []error
	if s.mem.selfState() == stateReady {
		s.mem.setState(stateLeaving)
		s.ready.Store(false)
		if err := s.handOff(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.closing.Store(true)
	if s.async != nil {
		s.async.close()
	}
	if err := s.ml.Leave(s.cfg.ReplicationTimeout); err != nil {
		errs = append(errs, fmt.Errorf("cluster: leave gossip: %w", err))
	}
	s.stopBg()
	if err := s.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: stop gossip: %w", err))
	}
	// Peers keep their HTTP/2 connections to us open; give in-flight calls
	// a moment, then cut the rest.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	s.ps.shutdown(sctx)
	s.pc.tr.CloseIdleConnections()
	s.wg.Wait()
	s.batch.close()
	s.metrics.unregister()
	s.log.Info("cluster node stopped")
	return errors.Join(errs...)
}

// crash stops the node the way a SIGKILL would, for tests: no leave, no
// hand-off, connections cut.
func (s *Store) crash() {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.closing.Store(true)
	s.ready.Store(false)
	s.stopBg()
	if s.async != nil {
		s.async.close()
	}
	_ = s.ml.Shutdown()
	_ = s.ps.srv.Close()
	s.pc.tr.CloseIdleConnections()
	s.wg.Wait()
	s.batch.close()
	s.metrics.unregister()
}

// check fails calls on a closed store or with a finished context.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if s.closing.Load() {
		return ErrClosed
	}
	return nil
}

func (s *Store) nowNano() int64 { return s.cfg.Now().UnixNano() }

// stamp returns a fresh write stamp.
func (s *Store) stamp() wire.Stamp { return wire.Stamp{T: s.clock.next(), Node: s.self} }

func (s *Store) stripe(id string) *sync.Mutex {
	return &s.stripes[maphash.String(s.stripeSeed, id)%uint64(len(s.stripes))]
}

// holders returns id's primary and backups among members.
func (s *Store) holders(id string, members []string) []string {
	if s.cfg.Mode == ModeAll {
		return members
	}
	return placement.Rank(id, members, 1+s.cfg.Backups)
}

// targets returns the peers a write to id must reach under v: its holders
// now and once the joining members are ready (ModeBackup), or every live
// peer (ModeAll); never this node.
func (s *Store) targets(id string, v *view) []string {
	var out []string
	if s.cfg.Mode == ModeAll {
		for _, m := range v.future {
			if m != s.self {
				out = append(out, m)
			}
		}
		return out
	}
	add := func(list []string) {
		for _, m := range list {
			if m != s.self && !containsStr(out, m) {
				out = append(out, m)
			}
		}
	}
	add(s.holders(id, v.ready))
	if len(v.future) != len(v.ready) {
		// Joining members will hold some ids: send them theirs already.
		// (future ⊇ ready, so equal lengths mean equal lists.)
		add(s.holders(id, v.future))
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// noticePeer is called for every authenticated peer request. A peer that
// memberlist lists as dead but that talks to us is alive: join it again, so
// that a node stuck "dead" after a mass restart (memberlist #311) is
// refuted within a round trip instead of at the next push/pull.
func (s *Store) noticePeer(name string) {
	if name == "" || name == s.self {
		return
	}
	s.mem.contact(name)
	mem, ok := s.mem.member(name)
	if !ok || mem.alive || mem.gossip == "" {
		return
	}
	s.noticeRejoin(name, mem.gossip)
}

// noticeRejoin joins addr (member name's gossip address) in the
// background, at most once a second per member.
func (s *Store) noticeRejoin(name, addr string) {
	s.rejoinMu.Lock()
	last := s.rejoined[name]
	now := s.cfg.Now()
	if now.Sub(last) < time.Second {
		s.rejoinMu.Unlock()
		return
	}
	s.rejoined[name] = now
	s.rejoinMu.Unlock()
	go func() {
		if _, err := s.ml.Join([]string{addr}); err != nil {
			s.log.Debug("re-join of a peer listed dead failed", "member", name, "error", err)
		}
	}()
}

// rejoinLoop joins the seeds and recently failed members again while they
// are missing from the membership: memberlist never heals a partition by
// itself (memberlist #222).
func (s *Store) rejoinLoop() {
	s.every(s.cfg.RejoinInterval, func() {
		targets := s.mem.rejoinTargets()
		if len(targets) == 0 {
			return
		}
		n, err := s.ml.Join(targets)
		if n > 0 {
			s.log.Debug("re-joined", "targets", targets, "reached", n)
		} else if err != nil {
			s.log.Debug("re-join found nobody", "targets", targets, "error", err)
		}
	})
}

// every runs fn every d until the store stops. It is meant to run as one
// of the store's background goroutines (s.wg).
func (s *Store) every(d time.Duration, fn func()) {
	defer s.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// fingerprint is a log-safe tag for a session id.
func fingerprint(id string) string { return session.Fingerprint(id) }

// pauseTick is how often pauseWatch runs.
const pauseTick = 100 * time.Millisecond

// pauseLimit is the longest this process may have stood still (a GC pause,
// SIGSTOP, a VM migration) without its peers possibly having declared it
// dead: their suspicion timeout. After a longer pause the node may hold
// stale copies (a session logged out at the backup that took over), so it
// must not serve them.
func (s *Store) pauseLimit() time.Duration {
	return time.Duration(s.cfg.SuspicionMult) * s.cfg.ProbeInterval
}

// paused reports whether pauseWatch has not run for longer than
// pauseLimit: this process was frozen and has not checked yet.
func (s *Store) paused() bool {
	return time.Since(s.started)-time.Duration(s.lastTick.Load()) > s.pauseLimit()
}

// pauseWatch notices when the process did not run for longer than
// pauseLimit and checks whether it was declared dead meanwhile (see
// checkPause).
func (s *Store) pauseWatch() {
	s.every(pauseTick, func() {
		now := time.Since(s.started)
		gap := now - time.Duration(s.lastTick.Load())
		ready := s.mem.selfState() == stateReady
		if gap > s.pauseLimit() && ready {
			s.checkPause(gap)
			return // the check moves lastTick on
		}
		s.lastTick.Store(int64(now))
		s.watchLease(ready)
	})
}

// checkPause starts, unless one is running, the check after a pause of
// gap: it asks the ready members whether they marked this node dead since
// the pause began. If none did, nothing was missed and the node goes on
// serving. If one did, a backup may have taken over and served writes and
// logouts meanwhile, so this node's copies may be stale: it leaves
// placement (joining), pulls its share again from the ready members (the
// merge brings every tombstone and newer write) and comes back. Calls that
// arrive meanwhile wait for the check (see servable).
func (s *Store) checkPause(gap time.Duration) {
	s.checkDeclaredDead(time.Now().Add(-gap-time.Second), "paused") // a second of margin for clock skew
}

// readySince is when this node last entered placement.
func (s *Store) readySince() time.Time { return time.Unix(0, s.mem.readyAt.Load()) }

// checkDeclaredDead starts, unless one is running, the check whether a
// member that saw half of the cluster marked this node dead since since
// (see checkPause); why says what prompted it, for the log.
func (s *Store) checkDeclaredDead(since time.Time, why string) {
	s.pauseMu.Lock()
	if s.pauseDone != nil || s.bg.Err() != nil {
		s.pauseMu.Unlock()
		return
	}
	done := make(chan struct{})
	s.pauseDone = done
	s.pauseMu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		finish := func() {
			s.lastTick.Store(int64(time.Since(s.started)))
			s.pauseMu.Lock()
			s.pauseDone = nil
			s.pauseMu.Unlock()
			close(done)
		}
		if !s.declaredDeadSince(since) {
			finish()
			return
		}
		if !s.resyncing.CompareAndSwap(false, true) {
			finish() // out of placement already, re-syncing
			return
		}
		defer s.resyncing.Store(false)
		s.lapses.Add(1)
		s.log.Warn("declared dead meanwhile by members that took over; re-syncing before serving again", "why", why, "since", since)
		s.mem.setState(stateJoining)
		s.ready.Store(false)
		finish() // calls now see a joining node and forward
		if err := s.transferIn(s.bg); err != nil || s.leaving.Load() {
			return
		}
		s.mem.setState(stateReady)
		s.ready.Store(true)
		s.log.Info("re-synced", "why", why)
	}()
}

// declaredDeadSince asks every ready member whether it marked this node
// dead at or after since. Members that do not answer say nothing.
func (s *Store) declaredDeadSince(since time.Time) bool {
	v := s.mem.view()
	var wg sync.WaitGroup
	var dead atomic.Bool
	for _, m := range v.ready {
		if m == s.self {
			continue
		}
		addr := v.peers[m]
		wg.Go(func() {
			var rep wire.HelloReply
			err := s.pc.call(s.bg, addr, pathHello, &wire.Hello{Node: s.self, GossipAddr: s.gossipAddr, PeerAddr: s.peerAddr, Since: since.UnixNano()}, &rep)
			if err == nil && rep.SawYouDown {
				dead.Store(true)
			}
		})
	}
	wg.Wait()
	return dead.Load()
}

// pauseWait returns, when a pause check is running or due, once it is
// done (or ctx ends, or it takes longer than twice the replication
// timeout).
func (s *Store) pauseWait(ctx context.Context) {
	if !s.paused() {
		s.pauseMu.Lock()
		running := s.pauseDone != nil
		s.pauseMu.Unlock()
		if !running {
			return
		}
	}
	s.checkPause(time.Since(s.started) - time.Duration(s.lastTick.Load()))
	s.pauseMu.Lock()
	done := s.pauseDone
	s.pauseMu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(2 * s.cfg.ReplicationTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}
