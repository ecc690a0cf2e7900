package memcachedstore

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/placement"
)

// Selector is a memcache.ServerSelector that picks each key's server by
// rendezvous hashing (placement.Score, the function the cluster store and
// the balancer's owner policy use) over the server names it was given.
//
// gomemcache's own ServerList picks crc32(key) mod len(servers): taking one
// of three servers out of the list moves two thirds of all keys (nine
// tenths of ten servers), not only the departed server's share, and moves
// them again when it comes back. With rendezvous hashing a key moves only
// if its server is the one added or removed: about 1/N of the keys.
//
// Scores are computed from the names exactly as given ("10.0.0.5:11211"),
// so every application server must spell the list the same way (the order
// does not matter). The zero value has no servers; PickServer then returns
// memcache.ErrNoServers. A Selector is safe for concurrent use, and
// SetServers may be called while requests are in flight.
type Selector struct {
	set atomic.Pointer[serverSet]
}

var _ memcache.ServerSelector = (*Selector)(nil)

// serverSet is one immutable server list: SetServers swaps in a new one, so
// PickServer reads without locking.
type serverSet struct {
	names []string
	addrs []net.Addr
}

// NewSelector returns a Selector over servers; see SetServers.
func NewSelector(servers ...string) (*Selector, error) {
	s := &Selector{}
	if err := s.SetServers(servers...); err != nil {
		return nil, err
	}
	return s, nil
}

// SetServers replaces the server list. Each server is host:port, or a
// path containing "/" for a Unix socket. It returns an error, and changes
// nothing, when a name is empty, listed twice, or does not resolve; no
// connection is attempted.
//
// Removing a server moves its keys (and only its keys) to the others; when
// it is added back they return to it. A server that comes back with old
// data (one taken out of the list while it was still running) would then
// serve sessions as they were before it left, including ones deleted
// meanwhile: flush or restart a memcached before adding it back.
func (s *Selector) SetServers(servers ...string) error {
	set := &serverSet{names: make([]string, len(servers)), addrs: make([]net.Addr, len(servers))}
	seen := make(map[string]bool, len(servers))
	for i, name := range servers {
		if name == "" {
			return errors.New("memcachedstore: empty server name")
		}
		if seen[name] {
			return fmt.Errorf("memcachedstore: server %q listed twice (rendezvous hashing gives a server one share however often it is named)", name)
		}
		seen[name] = true
		addr, err := resolve(name)
		if err != nil {
			return fmt.Errorf("memcachedstore: server %q: %w", name, err)
		}
		set.names[i], set.addrs[i] = name, addr
	}
	s.set.Store(set)
	return nil
}

// resolve turns a server name into an address once, as gomemcache's
// ServerList does, so PickServer does no DNS lookups.
func resolve(name string) (net.Addr, error) {
	if strings.Contains(name, "/") {
		a, err := net.ResolveUnixAddr("unix", name)
		if err != nil {
			return nil, err
		}
		return staticAddr{network: a.Network(), addr: a.String()}, nil
	}
	a, err := net.ResolveTCPAddr("tcp", name)
	if err != nil {
		return nil, err
	}
	return staticAddr{network: a.Network(), addr: a.String()}, nil
}

// staticAddr is a resolved address whose String gomemcache calls on every
// request to find its idle connections: precomputed, not formatted each time.
type staticAddr struct{ network, addr string }

func (a staticAddr) Network() string { return a.network }
func (a staticAddr) String() string  { return a.addr }

// Servers returns the current server names in the order given.
func (s *Selector) Servers() []string {
	set := s.set.Load()
	if set == nil {
		return nil
	}
	return append([]string(nil), set.names...)
}

// PickServer returns the server with the highest rendezvous score for key.
// It returns memcache.ErrNoServers when the list is empty. It allocates
// nothing.
func (s *Selector) PickServer(key string) (net.Addr, error) {
	set := s.set.Load()
	if set == nil || len(set.names) == 0 {
		return nil, memcache.ErrNoServers
	}
	best, bestScore := 0, uint64(0)
	for i, name := range set.names {
		// Ties (vanishingly rare) go to the smaller name, as in
		// placement.Primary, so every application server agrees.
		sc := placement.Score(name, key)
		if i == 0 || sc > bestScore || (sc == bestScore && name < set.names[best]) {
			best, bestScore = i, sc
		}
	}
	return set.addrs[best], nil
}

// Each calls f for every server until f returns an error, which it
// returns.
func (s *Selector) Each(f func(net.Addr) error) error {
	set := s.set.Load()
	if set == nil {
		return nil
	}
	for _, a := range set.addrs {
		if err := f(a); err != nil {
			return err
		}
	}
	return nil
}
