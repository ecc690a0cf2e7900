package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// ErrNoSession is returned by Session methods called outside the Manager's
// middleware, when the request context carries no session.
var ErrNoSession = errors.New("session: no session in context (is Manager.Middleware installed?)")

// ErrKeyNotFound is returned by Get and Pop when the session has no value
// under the key.
var ErrKeyNotFound = errors.New("session: key not found")

// ErrCommitted is returned by the Session methods that change a session
// when the response has already started: the session was saved with its
// headers, so a later change could not reach the store or the cookie.
var ErrCommitted = errors.New("session: response already started; the session can no longer change")

type ctxKey struct{}

// FromContext returns the session the Manager's middleware attached to ctx,
// or nil when there is none. Every method of a nil *Session is safe: reads
// return zero values, writes return ErrNoSession.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// A Session is one request's view of a user's session. It loads lazily, on
// the first method that needs the data, and records changes so that the
// middleware can send the store only a delta. A Session is safe for use by
// the goroutines of its request; it must not outlive the request.
type Session struct {
	m   *Manager
	ctx context.Context
	req *http.Request // the id is read from it at load time

	mu     sync.Mutex
	loaded bool
	err    error // load failure; the request is answered by ErrorHandler

	id        string // current id; "" until a fresh session is first saved
	exists    bool   // the store holds id
	created   time.Time
	touched   time.Time
	values    map[string][]byte
	size      int
	set       map[string][]byte
	del       map[string]struct{}
	principal string
	setPrinc  bool
	dropIDs   []string // ids to delete at commit: destroyed or renewed away
	// renewedFrom is the stored id Renew moved away from, "" if none. At
	// commit it must still exist for its data to move to the new id.
	renewedFrom string
	destroyed   bool // Destroy was called (fires the Destroyed event)
	committed   bool
}

// load fetches the session once. The caller holds s.mu.
func (s *Session) load() error {
	if s.loaded {
		return s.err
	}
	s.loaded = true
	m := s.m
	clientID := m.clientID(s.req)
	if clientID == "" {
		return nil
	}
	m.stats.loads.Add(1)
	rec, err := m.store.Load(s.ctx, clientID)
	switch {
	case errors.Is(err, ErrNotFound):
		// An unknown id starts a fresh session with a fresh id: a client
		// never chooses its own id.
		return nil
	case err != nil:
		m.stats.errors.Add(1)
		s.err = fmt.Errorf("load session %s: %w", Fingerprint(clientID), err)
		return s.err
	}
	if m.expired(rec, m.opts.Now()) {
		// The store's TTL is a hint; the Manager's deadlines are the rule.
		if err := m.store.Delete(s.ctx, rec.ID); err != nil {
			m.opts.Logger.WarnContext(s.ctx, "delete expired session", "session", Fingerprint(rec.ID), "error", err)
		}
		if m.opts.Events.Expired != nil {
			m.opts.Events.Expired(s.ctx, rec.ID)
		}
		return nil
	}
	s.id, s.exists = rec.ID, true
	s.created, s.touched = rec.Created, rec.Touched
	s.values = rec.Values
	s.size = rec.Size()
	s.principal = rec.Principal
	return nil
}

// writable loads the session and reports whether it may still change. The
// caller holds s.mu.
func (s *Session) writable() error {
	if err := s.load(); err != nil {
		return err
	}
	if s.committed {
		return ErrCommitted
	}
	return nil
}

// Err reports why the session could not be loaded (a store failure), or nil.
// When it is not nil the middleware answers the request with ErrorHandler.
func (s *Session) Err() error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// ID returns the session's current id, or "" for a fresh session that has
// not been saved yet. It is a secret: do not log it (see Fingerprint).
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.load()
	return s.id
}

// IsNew reports whether the session is not (yet) in the store: the client
// presented no id, an unknown or expired one, or the session was destroyed
// or renewed during this request.
func (s *Session) IsNew() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.load()
	return !s.exists
}

// raw returns the encoded value under key. The caller holds s.mu.
func (s *Session) raw(key string) ([]byte, error) {
	if err := s.load(); err != nil {
		return nil, err
	}
	b, ok := s.values[key]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return b, nil
}

// Get decodes the value under key into a T. It returns ErrKeyNotFound when
// there is none, the load error when the store failed, or the codec's error
// when the stored value does not decode into a T.
func Get[T any](s *Session, key string) (T, error) {
	var v T
	if s == nil {
		return v, ErrNoSession
	}
	s.mu.Lock()
	b, err := s.raw(key)
	s.mu.Unlock()
	if err != nil {
		return v, err
	}
	if err := s.m.opts.Codec.Decode(b, &v); err != nil {
		return v, fmt.Errorf("get %q: %w", key, err)
	}
	return v, nil
}

// Pop is Get followed by Delete: a value read once (a flash message). It
// deletes nothing when it returns an error.
func Pop[T any](s *Session, key string) (T, error) {
	v, err := Get[T](s, key)
	if err == nil {
		s.Delete(key)
	}
	return v, err
}

func orZero[T any](v T, _ error) T { return v }

// GetString returns the string under key, or "" when there is none or it is
// not a string. The typed getters below behave alike; use Get for errors.
func (s *Session) GetString(key string) string { return orZero(Get[string](s, key)) }

// GetInt returns the int under key, or 0.
func (s *Session) GetInt(key string) int { return orZero(Get[int](s, key)) }

// GetInt64 returns the int64 under key, or 0.
func (s *Session) GetInt64(key string) int64 { return orZero(Get[int64](s, key)) }

// GetFloat64 returns the float64 under key, or 0.
func (s *Session) GetFloat64(key string) float64 { return orZero(Get[float64](s, key)) }

// GetBool returns the bool under key, or false.
func (s *Session) GetBool(key string) bool { return orZero(Get[bool](s, key)) }

// GetTime returns the time under key, or the zero time.
func (s *Session) GetTime(key string) time.Time { return orZero(Get[time.Time](s, key)) }

// GetBytes returns the []byte under key, or nil.
func (s *Session) GetBytes(key string) []byte { return orZero(Get[[]byte](s, key)) }

// PopString returns the string under key and deletes it, or "".
func (s *Session) PopString(key string) string { return orZero(Pop[string](s, key)) }

// Has reports whether the session has a value under key.
func (s *Session) Has(key string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.raw(key)
	return err == nil
}

// Keys returns the session's keys, sorted.
func (s *Session) Keys() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.values))
}

// Put stores v under key, encoded by the Manager's Codec. It returns the
// codec's error, ErrTooLarge when the session would exceed MaxSize (the
// session is then unchanged), ErrCommitted once the response has started,
// or the load error when the store failed.
func (s *Session) Put(key string, v any) error {
	if s == nil {
		return ErrNoSession
	}
	b, err := s.m.opts.Codec.Encode(v)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	old, had := s.values[key]
	size := s.size + len(key) + len(b)
	if had {
		size -= len(key) + len(old)
	}
	if size > s.m.opts.MaxSize {
		return fmt.Errorf("put %q: %d bytes, limit %d: %w", key, size, s.m.opts.MaxSize, ErrTooLarge)
	}
	if s.values == nil {
		s.values = map[string][]byte{}
	}
	s.values[key] = b
	s.size = size
	if s.set == nil {
		s.set = map[string][]byte{}
	}
	s.set[key] = b
	delete(s.del, key)
	return nil
}

// Delete removes the value under key; deleting an absent key does nothing.
// Once the response has started it does nothing and logs a warning.
func (s *Session) Delete(key string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		if errors.Is(err, ErrCommitted) {
			s.m.opts.Logger.WarnContext(s.ctx, "session Delete after the response started was dropped", "key", key)
		}
		return
	}
	old, had := s.values[key]
	if !had {
		return
	}
	delete(s.values, key)
	s.size -= len(key) + len(old)
	delete(s.set, key)
	if s.del == nil {
		s.del = map[string]struct{}{}
	}
	s.del[key] = struct{}{}
}

// Principal returns the user the session belongs to, or "".
func (s *Session) Principal() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.load()
	return s.principal
}

// SetPrincipal records the user the session belongs to, so that
// Manager.DestroyPrincipal can end all of that user's sessions. Call Renew
// with it at login. It returns ErrCommitted once the response has started,
// or the load error when the store failed.
func (s *Session) SetPrincipal(p string) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	s.principal, s.setPrinc = p, true
	return nil
}

// Renew gives the session a new id, keeping its data, and destroys the old
// id when the response is committed: the defence against session fixation,
// to call at login and at every change of privilege. The renewed session's
// absolute lifetime starts again. If the old session is destroyed by another
// request before this one commits (a logout in another tab), its data is not
// carried over: the new session holds only what this request wrote. It
// returns ErrCommitted once the response has started, or the load error when
// the store failed.
func (s *Session) Renew() error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.exists {
		s.dropIDs = append(s.dropIDs, s.id)
		if s.renewedFrom == "" {
			s.renewedFrom = s.id
		}
	}
	s.exists = false
	s.id = NewID()
	return nil
}

// Destroy ends the session: its data is dropped, the store's copy deleted
// when the response is committed, and the cookie cleared. Values put after
// Destroy start a new session with a new id. It returns ErrCommitted once
// the response has started, or the load error when the store failed.
func (s *Session) Destroy() error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.exists || s.renewedFrom != "" {
		if s.exists {
			s.dropIDs = append(s.dropIDs, s.id)
		}
		s.destroyed = true
	}
	s.exists = false
	s.renewedFrom = ""
	s.id = ""
	s.values, s.size, s.set, s.del = nil, 0, nil, nil
	s.principal, s.setPrinc = "", false
	return nil
}
