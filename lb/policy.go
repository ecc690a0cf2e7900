package lb

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"

	"github.com/roamsession/roam/placement"
)

// A Policy picks the backend for one attempt of a request. It returns nil
// when no backend is available; the proxy then answers 503 Service
// Unavailable. Pick is called again, with the failed backend marked as
// tried, when an attempt is retried, so a policy's second answer is its
// "next choice". Pick must be safe for concurrent use.
type Policy interface {
	Pick(p Pool, r *http.Request) *Backend
}

// A Pinner is a policy that wants to know which backend finally answered
// a request, to pin the client to it (the cookie policy sets its cookie,
// the hash policies remember a key that moved). Pin runs before the
// response headers are written.
type Pinner interface {
	Pin(h http.Header, r *http.Request, p Pool, b *Backend)
}

// policyDeps is what constructing a policy may need from the balancer.
type policyDeps struct {
	cfg     *Config
	metrics *metrics
	moves   *moveTable
	secret  []byte
	all     []*Backend
}

// newPolicy builds the named policy. Names are validated by
// Config.Validate; an unknown name here is a programming error.
func newPolicy(name string, d policyDeps) (Policy, error) {
	fallback := func() (Policy, error) { return newPolicy(d.cfg.Fallback, d) }
	switch name {
	case "round_robin":
		return &roundRobin{}, nil
	case "least_conn":
		return &leastConn{}, nil
	case "random_two":
		return randomTwo{}, nil
	case "ip_hash":
		return &ipHash{modulo: d.cfg.IPHash.Form == "modulo", moves: d.moves}, nil
	case "cookie":
		fb, err := fallback()
		if err != nil {
			return nil, err
		}
		return newCookiePolicy(d.cfg, d.secret, d.all, fb, d.metrics), nil
	case "hash_cookie":
		fb, err := fallback()
		if err != nil {
			return nil, err
		}
		return &hashCookie{name: d.cfg.SessionCookie, fallback: fb, moves: d.moves}, nil
	case "owner":
		fb, err := fallback()
		if err != nil {
			return nil, err
		}
		return &owner{name: d.cfg.SessionCookie, fallback: fb}, nil
	}
	return nil, fmt.Errorf("%w: policy: unknown policy %q", ErrConfig, name)
}

// roundRobin hands requests to the available backends in turn.
type roundRobin struct{ next atomic.Uint64 }

// Pick returns the next available backend after the previous pick.
func (rr *roundRobin) Pick(p Pool, _ *http.Request) *Backend {
	n := len(p.all)
	if n == 0 {
		return nil
	}
	start := int(rr.next.Add(1) % uint64(n))
	for i := 0; i < n; i++ {
		if b := p.all[(start+i)%n]; p.Available(b) {
			return b
		}
	}
	return nil
}

// leastConn picks the available backend with the fewest requests in
// flight. It counts active requests rather than connections because the
// balancer keeps a pool of idle keep-alive connections to every backend:
// connection counts say nothing about load, requests in flight do (and a
// long stream or WebSocket counts until it ends).
type leastConn struct{ rot atomic.Uint64 }

// Pick returns the least loaded available backend; ties are broken by a
// rotating start so that an idle cluster still spreads requests.
func (lc *leastConn) Pick(p Pool, _ *http.Request) *Backend {
	n := len(p.all)
	if n == 0 {
		return nil
	}
	start := int(lc.rot.Add(1) % uint64(n))
	return leastLoaded(p, start)
}

// leastLoaded returns the available backend with the fewest active
// requests, scanning from start; nil when none is available.
func leastLoaded(p Pool, start int) *Backend {
	var best *Backend
	var bestActive int64
	n := len(p.all)
	for i := 0; i < n; i++ {
		b := p.all[(start+i)%n]
		if !p.Available(b) {
			continue
		}
		if a := b.active.Load(); best == nil || a < bestActive {
			best, bestActive = b, a
		}
	}
	return best
}

// randomTwo is the power of two choices: of two available backends drawn
// at random it picks the less loaded. It keeps load nearly as even as
// least_conn without every balancer instance herding onto the same
// "least loaded" server when several balancers share the backends.
type randomTwo struct{}

// Pick returns the less loaded of two random available backends.
func (randomTwo) Pick(p Pool, _ *http.Request) *Backend {
	var idx [64]int
	cand := idx[:0]
	for i, b := range p.all {
		if p.Available(b) {
			cand = append(cand, i)
		}
	}
	switch len(cand) {
	case 0:
		return nil
	case 1:
		return p.all[cand[0]]
	}
	i := rand.IntN(len(cand))
	j := rand.IntN(len(cand) - 1)
	if j >= i {
		j++
	}
	a, b := p.all[cand[i]], p.all[cand[j]]
	if b.active.Load() < a.active.Load() {
		return b
	}
	return a
}

// rendezvous returns the serving backend with the highest placement score
// for key, and the home backend: the one with the highest score of all,
// whatever its state. Using placement.Score makes the answer the one every
// roam node computes for the same member list.
func rendezvous(p Pool, key string) (best, home *Backend) {
	var bestS, homeS uint64
	for _, b := range p.all {
		if b.removed.Load() {
			continue
		}
		s := placement.Score(b.id, key)
		if home == nil || s > homeS || (s == homeS && b.id < home.id) {
			home, homeS = b, s
		}
		if !p.Serving(b) {
			continue
		}
		if best == nil || s > bestS || (s == bestS && b.id < best.id) {
			best, bestS = b, s
		}
	}
	return best, home
}

// fnv64a hashes s with FNV-1a and a final mix.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}
