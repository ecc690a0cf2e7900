package memstore

import (
	"context"
	"sync"
)

// principalIndex maps each principal to the ids of its sessions. It is
// kept in step with the shards under their write locks (shard lock first,
// then the index's), so it may still list a session that has expired but
// not yet been swept; readers check each id against its shard.
//
// One lock for the whole index is enough: it is taken only when a
// principal changes (login, logout) or a logged-in session is deleted,
// never on the read path.
type principalIndex struct {
	mu sync.Mutex
	m  map[string]map[string]struct{}
}

// add records that id belongs to p. The anonymous principal "" is never
// indexed.
func (x *principalIndex) add(p, id string) {
	if p == "" {
		return
	}
	x.mu.Lock()
	ids := x.m[p]
	if ids == nil {
		ids = make(map[string]struct{})
		x.m[p] = ids
	}
	ids[id] = struct{}{}
	x.mu.Unlock()
}

// remove forgets that id belongs to p.
func (x *principalIndex) remove(p, id string) {
	if p == "" {
		return
	}
	x.mu.Lock()
	if ids := x.m[p]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(x.m, p)
		}
	}
	x.mu.Unlock()
}

// move records that id changed from principal from to principal to.
func (x *principalIndex) move(id, from, to string) {
	x.remove(from, id)
	x.add(to, id)
}

// ids returns a snapshot of p's session ids.
func (x *principalIndex) ids(p string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.m[p]
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	return out
}

// FindByPrincipal returns the ids of principal's live sessions, in no
// particular order, or an empty slice. The anonymous principal "" has no
// sessions here. It returns ErrClosed after Close and ctx's error when ctx is
// already done.
func (s *Store) FindByPrincipal(ctx context.Context, principal string) ([]string, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if principal == "" {
		return []string{}, nil
	}
	now := s.t.now()
	ids := s.t.index.ids(principal)
	live := ids[:0]
	for _, id := range ids {
		sh := s.t.shard(id)
		sh.mu.RLock()
		e, ok := sh.m[id]
		ok = ok && e.principal == principal && !e.expired(now)
		sh.mu.RUnlock()
		if ok {
			live = append(live, id)
		}
	}
	return live, nil
}

// DeleteByPrincipal destroys every session of principal and reports how
// many live ones it destroyed (expired ones it meets are freed but not
// counted). A session given to principal while the call runs may survive
// it. DeleteByPrincipal("") destroys nothing: anonymous sessions belong to
// no one. It returns ErrClosed after Close and ctx's error when ctx is
// already done.
func (s *Store) DeleteByPrincipal(ctx context.Context, principal string) (int, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if principal == "" {
		return 0, nil
	}
	now := s.t.now()
	n := 0
	// The index lock is not held across shard locks (the lock order is
	// shard, then index), so work from a snapshot and recheck each session.
	for _, id := range s.t.index.ids(principal) {
		sh := s.t.shard(id)
		sh.mu.Lock()
		if e, ok := sh.m[id]; ok && e.principal == principal {
			if !e.expired(now) {
				n++
			}
			s.t.drop(sh, id, e)
		}
		sh.mu.Unlock()
	}
	return n, nil
}
