package memstore

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/roamsession/roam/session"
)

// shardCount spreads sessions over this many independently locked maps, so
// requests of different users rarely wait for one another (and, on many
// cores, rarely bounce one lock's cache line). A power of two: the shard is
// picked with a mask.
const shardCount = 64

// table is the state a Store and its sweeper goroutine share. It is kept
// apart from Store so that the sweeper does not keep the Store reachable.
type table struct {
	shards [shardCount]shard
	index  principalIndex
	seed   maphash.Seed // per store, so no one can aim ids at one shard
	now    func() time.Time
}

// shard is one lock and the sessions it guards.
type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
	// Pad to a cache line so that locking one shard does not slow down
	// cores working on its neighbours.
	_ [64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[string]*entry(nil)))%64]byte
}

// entry is a stored session. It is changed in place under its shard's write
// lock and copied out under the read lock; nothing outside the store ever
// sees its slices.
type entry struct {
	attrs
	principal string
	created   time.Time
	touched   time.Time
	expires   time.Time // zero: never expires
}

// shard returns the shard that holds id.
func (t *table) shard(id string) *shard {
	return &t.shards[maphash.String(t.seed, id)&(shardCount-1)]
}

// expired reports whether e's Expires has passed at now.
func (e *entry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// record returns a copy of e as a session.Record.
func (e *entry) record(id string) *session.Record {
	return &session.Record{
		ID:        id,
		Values:    e.copyOut(),
		Principal: e.principal,
		Created:   e.created,
		Touched:   e.touched,
		Expires:   e.expires,
	}
}

// drop removes e, stored under id in sh, from sh and the principal index.
// The caller holds sh's write lock.
func (t *table) drop(sh *shard, id string, e *entry) {
	delete(sh.m, id)
	if e.principal != "" {
		t.index.remove(e.principal, id)
	}
}

// sweep frees every expired session.
func (t *table) sweep() {
	now := t.now()
	var dead []string
	for i := range t.shards {
		sh := &t.shards[i]
		// Find the dead under the read lock: most sweeps find few, and
		// requests should not queue behind a write lock for a whole scan.
		dead = dead[:0]
		sh.mu.RLock()
		for id, e := range sh.m {
			if e.expired(now) {
				dead = append(dead, id)
			}
		}
		sh.mu.RUnlock()
		if len(dead) == 0 {
			continue
		}
		sh.mu.Lock()
		for _, id := range dead {
			// Look again: the session may have been extended meanwhile.
			if e, ok := sh.m[id]; ok && e.expired(now) {
				t.drop(sh, id, e)
			}
		}
		sh.mu.Unlock()
	}
}

// sweeper runs table.sweep on a ticker until halted.
type sweeper struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// startSweeper starts a goroutine that sweeps t every interval.
func startSweeper(t *table, every time.Duration) *sweeper {
	w := &sweeper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				t.sweep()
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

// halt stops the goroutine and waits for it to return. It may be called
// any number of times.
func (w *sweeper) halt() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
