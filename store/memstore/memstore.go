// Package memstore keeps sessions in the memory of one process.
//
// It is the store for a single server, for tests, and for the demo's
// "none" and "sticky" strategies, where each node keeping its own sessions
// is the point. Everything is lost when the process exits, and no other
// process sees it. Use redisstore, sqlstore or the cluster store when
// sessions must outlive a process or be shared between servers.
//
// A Store implements session.Store, session.Toucher, session.PrincipalIndex
// and session.Lister, and passes the store/storetest suite.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/roamsession/roam/session"
)

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("memstore: store is closed")

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often a background goroutine drops expired
	// sessions to free their memory. It does not decide when a session
	// expires: every method treats a session whose Expires has passed as
	// absent at once. Zero means one minute; a negative value disables the
	// sweeper, and expired sessions are then freed only when their id is
	// written or deleted (or by DeleteByPrincipal).
	SweepInterval time.Duration

	// Now returns the current time that Expires is compared with. Nil means
	// time.Now. Tests of code built on the store set it to move time without
	// waiting.
	Now func() time.Time
}

// DefaultSweepInterval is the SweepInterval used when Options leaves it zero.
const DefaultSweepInterval = time.Minute

// Store is an in-memory session store, safe for concurrent use. Create one
// with New and Close it when done.
type Store struct {
	t      *table
	sw     *sweeper // nil when the sweeper is disabled
	closed atomic.Bool
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.Toucher        = (*Store)(nil)
	_ session.PrincipalIndex = (*Store)(nil)
	_ session.Lister         = (*Store)(nil)
)

// New returns an empty Store and starts its expiry sweeper.
func New(opts Options) *Store {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	t := &table{seed: maphash.MakeSeed(), now: now}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
	}
	t.index.m = make(map[string]map[string]struct{})
	s := &Store{t: t}
	every := opts.SweepInterval
	if every == 0 {
		every = DefaultSweepInterval
	}
	if every > 0 {
		s.sw = startSweeper(t, every)
		// The sweeper holds only the table, never s, so a Store its owner
		// forgot to Close still becomes garbage, and this stops its goroutine.
		runtime.AddCleanup(s, func(w *sweeper) { w.halt() }, s.sw)
	}
	return s
}

// Close stops the sweeper and waits for it to return. Afterwards every
// method returns ErrClosed. Close is idempotent and always returns nil.
func (s *Store) Close() error {
	s.closed.Store(true)
	if s.sw != nil {
		s.sw.halt()
	}
	return nil
}

// usable returns why a call cannot proceed: the store is closed or ctx is
// already done. The store never blocks, so checking ctx once on entry is
// all the cancellation it needs; it keeps a call with a dead context from
// changing anything.
func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// Load returns a copy of the session id. It returns session.ErrNotFound
// when there is no such session or its Expires has passed, ErrClosed after
// Close, and ctx's error when ctx is already done.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	now := s.t.now()
	sh := s.t.shard(id)
	sh.mu.RLock()
	e, ok := sh.m[id]
	if !ok || e.expired(now) {
		sh.mu.RUnlock()
		return nil, session.ErrNotFound
	}
	rec := e.record(id)
	sh.mu.RUnlock()
	return rec, nil
}

// Apply applies d to the session id atomically, copying d's values. It
// returns session.ErrNotFound when the session does not exist or has
// expired and d.Create is false; with d.Create it starts an empty session
// in that case. Apply deletes d.Del before it sets d.Set, so a key named in
// both ends up set. It returns ErrClosed after Close and ctx's error when
// ctx is already done, without changing anything.
func (s *Store) Apply(ctx context.Context, id string, d session.Delta) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	// Copy before locking: the copies are ours whatever happens, and the
	// shard's lock is held only for the updates. Each value gets its own
	// allocation, since a stored value may later be replaced on its own and
	// must not keep a shared buffer (and its neighbours' bytes) alive. The
	// array keeps the usual small delta off the heap.
	var small [4]attr
	set := small[:0]
	for k, v := range d.Set {
		set = append(set, attr{k, append(make([]byte, 0, len(v)), v...)})
	}
	now := s.t.now()
	sh := s.t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[id]
	if ok && e.expired(now) {
		// Expired is absent: drop it rather than merge into it, so neither a
		// late write revives it nor a Create inherits its attributes.
		s.t.drop(sh, id, e)
		ok = false
	}
	if !ok {
		if !d.Create {
			return session.ErrNotFound
		}
		e = &entry{created: d.Created}
		e.kvs = make([]attr, 0, len(set))
		sh.m[id] = e
	}
	for _, k := range d.Del {
		e.del(k)
	}
	for _, p := range set {
		e.set(p.k, p.v)
	}
	if d.SetPrincipal && d.Principal != e.principal {
		s.t.index.move(id, e.principal, d.Principal)
		e.principal = d.Principal
	}
	if !d.Touched.IsZero() {
		e.touched = d.Touched
	}
	if !d.Expires.IsZero() {
		e.expires = d.Expires
	}
	return nil
}

// Delete destroys the session id; deleting an absent id is not an error.
// A single process has no replicas, so an id once deleted stays deleted:
// a later Apply without Create finds nothing. Delete returns ErrClosed
// after Close and ctx's error when ctx is already done.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	sh := s.t.shard(id)
	sh.mu.Lock()
	if e, ok := sh.m[id]; ok {
		s.t.drop(sh, id, e)
	}
	sh.mu.Unlock()
	return nil
}

// Touch sets the session's Touched and Expires; a zero time leaves that
// field as it is, as in a Delta. It returns session.ErrNotFound when the
// session does not exist or has expired, ErrClosed after Close, and ctx's
// error when ctx is already done.
func (s *Store) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	now := s.t.now()
	sh := s.t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[id]
	if !ok {
		return session.ErrNotFound
	}
	if e.expired(now) {
		s.t.drop(sh, id, e)
		return session.ErrNotFound
	}
	if !touched.IsZero() {
		e.touched = touched
	}
	if !expires.IsZero() {
		e.expires = expires
	}
	return nil
}
