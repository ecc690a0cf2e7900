package lb

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// ipHash sends each client address to one backend. The modulo form is the
// classic hash(addr) mod N over the configured backends (probing the next
// one when that backend is down): simple, but when N changes almost every
// client moves. The consistent form ranks backends by rendezvous hashing,
// so adding a backend moves only the clients the new one wins (about
// 1/(N+1)) and a dead backend's clients spread over the others.
//
// The client address is the socket peer's, or X-Forwarded-For's when the
// peer is a trusted proxy (see Config.TrustedProxies): a client must not
// be able to choose its backend by sending a header.
type ipHash struct {
	modulo bool
	moves  *moveTable
}

// Pick returns the backend the client address hashes to.
func (h *ipHash) Pick(p Pool, r *http.Request) *Backend {
	key := p.rs.clientIP
	return pickHashed(p, key, h.moves, func() (best, home *Backend) {
		if !h.modulo {
			return rendezvous(p, key)
		}
		n := len(p.all)
		if n == 0 {
			return nil, nil
		}
		start := int(fnv64a(key) % uint64(n))
		home = p.all[start]
		for i := 0; i < n; i++ {
			if b := p.all[(start+i)%n]; p.Serving(b) {
				return b, home
			}
		}
		return nil, home
	})
}

// Pin remembers a client that was moved off its dead backend.
func (h *ipHash) Pin(_ http.Header, _ *http.Request, p Pool, b *Backend) {
	h.moves.pin(p, b)
}

// hashCookie sends each value of an application cookie (the session
// cookie by default) to one backend by rendezvous hashing, as nginx's
// "hash $cookie_x consistent" does. It inserts no cookie of its own.
// Requests without the cookie are placed by the fallback policy.
type hashCookie struct {
	name     string
	fallback Policy
	moves    *moveTable
}

// Pick returns the backend the cookie's value hashes to, or the fallback's
// choice when the request has no such cookie.
func (h *hashCookie) Pick(p Pool, r *http.Request) *Backend {
	key, ok := cookieValue(r.Header, h.name)
	if !ok || key == "" {
		return h.fallback.Pick(p, r)
	}
	return pickHashed(p, key, h.moves, func() (*Backend, *Backend) { return rendezvous(p, key) })
}

// Pin remembers a key that was moved off its dead backend.
func (h *hashCookie) Pin(_ http.Header, _ *http.Request, p Pool, b *Backend) {
	h.moves.pin(p, b)
}

// pickHashed applies the move table around a hash pick: a key that was
// moved off its home stays where it was moved while that backend serves.
func pickHashed(p Pool, key string, moves *moveTable, hash func() (best, home *Backend)) *Backend {
	rs := p.rs
	rs.hashKey = key
	if moves != nil {
		if b := moves.lookup(key); b != nil && p.Serving(b) {
			rs.home, rs.moved = nil, true
			return b
		}
	}
	best, home := hash()
	rs.home, rs.moved = home, false
	return best
}

// moveTable remembers, for a bounded time, keys (client addresses or
// cookie values) that a hash policy had to send away from their home
// backend because it was down. Without it, the key moves back the moment
// its home returns: a user whose session was recreated on the second
// server would lose it a second time (nginx's hash does exactly that).
// With it the key stays on the server that now holds its session until it
// has been idle for the table's TTL.
type moveTable struct {
	ttl int64 // nanoseconds
	max int
	n   atomic.Int64 // len(m), read without the lock on the fast path

	mu sync.Mutex
	m  map[string]moveEntry
}

type moveEntry struct {
	b    *Backend
	seen int64
}

// newMoveTable returns a table with the given TTL in nanoseconds, or nil
// (remember nothing) when ttl is not positive.
func newMoveTable(ttl int64, max int) *moveTable {
	if ttl <= 0 {
		return nil
	}
	return &moveTable{ttl: ttl, max: max, m: make(map[string]moveEntry)}
}

func (t *moveTable) lookup(key string) *Backend {
	if t == nil || t.n.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	e, ok := t.m[key]
	t.mu.Unlock()
	if !ok || nowNano()-e.seen > t.ttl {
		return nil
	}
	return e.b
}

// pin records where the request's hash key was served: a key served away
// from its home is remembered (or refreshed); a key served at home is
// forgotten.
func (t *moveTable) pin(p Pool, b *Backend) {
	rs := p.rs
	if t == nil || rs.hashKey == "" {
		return
	}
	if !rs.moved && b == rs.home {
		if t.n.Load() != 0 {
			t.mu.Lock()
			if _, ok := t.m[rs.hashKey]; ok {
				delete(t.m, rs.hashKey)
				t.n.Store(int64(len(t.m)))
			}
			t.mu.Unlock()
		}
		return
	}
	now := p.now
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[rs.hashKey]; ok && e.b == b {
		t.m[rs.hashKey] = moveEntry{b, now}
		return
	}
	if len(t.m) >= t.max {
		t.evictLocked(now)
	}
	// The key is a substring of a request header: clone it so the table
	// does not keep whole headers alive.
	t.m[strings.Clone(rs.hashKey)] = moveEntry{b, now}
	t.n.Store(int64(len(t.m)))
}

// evictLocked drops expired entries and, if the table is still full, an
// arbitrary tenth of it: the table is a best-effort memory, bounded.
func (t *moveTable) evictLocked(now int64) {
	for k, e := range t.m {
		if now-e.seen > t.ttl || e.b.removed.Load() {
			delete(t.m, k)
		}
	}
	drop := len(t.m) - t.max + t.max/10 + 1
	for k := range t.m {
		if drop <= 0 {
			break
		}
		delete(t.m, k)
		drop--
	}
}

// cookieValue returns the value of the named cookie in the request's
// Cookie headers without allocating (unlike http.Request.Cookie). The
// first occurrence wins, as in net/http.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			part = strings.TrimLeft(part, " \t")
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := strings.TrimRight(part[len(name)+1:], " \t")
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}
