package storetest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/roamsession/roam/session"
)

// refStore is the simplest correct store: one mutex, one map. With a flaw
// set it turns into one of the broken stores the suite must catch; each flaw
// is a mistake real stores make.
type refStore struct {
	flaw string
	mu   sync.Mutex
	m    map[string]*refEntry
	// index is principal → ids, maintained on create and principal change;
	// readers verify each id against m unless the flaw says not to.
	index map[string]map[string]bool
}

type refEntry struct {
	values    map[string][]byte
	principal string
	created   time.Time
	touched   time.Time
	expires   time.Time
	life      time.Duration // expires - touched at creation, for refreshesTTLOnWrite
}

func newRef(flaw string) *refStore {
	return &refStore{flaw: flaw, m: map[string]*refEntry{}, index: map[string]map[string]bool{}}
}

func (s *refStore) has(flaw string) bool { return s.flaw == flaw }

// live reports whether e is a session that has not expired.
func (s *refStore) live(e *refEntry) bool {
	if s.has("ignoresExpires") {
		return true
	}
	now := time.Now()
	if s.has("expiresEarly") {
		now = now.Add(60 * time.Millisecond)
	}
	return now.Before(e.expires)
}

func (s *refStore) ctxErr(ctx context.Context) error {
	if s.has("ignoresContext") {
		return nil
	}
	return ctx.Err()
}

func (s *refStore) copyIn(v []byte) []byte {
	if s.has("sharedMaps") {
		return v
	}
	if s.has("truncatesAtNUL") {
		if i := slices.Index(v, 0); i >= 0 {
			v = v[:i]
		}
	}
	return slices.Clone(v)
}

func (s *refStore) record(id string, e *refEntry) *session.Record {
	r := &session.Record{ID: id, Principal: e.principal, Created: e.created, Touched: e.touched, Expires: e.expires}
	if s.has("sharedMaps") {
		r.Values = e.values
		return r
	}
	r.Values = make(map[string][]byte, len(e.values))
	for k, v := range e.values {
		r.Values[k] = slices.Clone(v)
	}
	return r
}

func (s *refStore) indexAdd(p, id string) {
	if p == "" && !s.has("indexesAnonymous") {
		return
	}
	if s.index[p] == nil {
		s.index[p] = map[string]bool{}
	}
	s.index[p][id] = true
}

func (s *refStore) drop(id string) {
	if e, ok := s.m[id]; ok {
		delete(s.index[e.principal], id)
		delete(s.m, id)
	}
}

func (s *refStore) Load(ctx context.Context, id string) (*session.Record, error) {
	if err := s.ctxErr(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok || !s.live(e) {
		return nil, session.ErrNotFound
	}
	return s.record(id, e), nil
}

func (s *refStore) Apply(ctx context.Context, id string, d session.Delta) error {
	if err := s.ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if ok && !s.live(e) {
		if !d.Create || !s.has("createMergesExpired") {
			s.drop(id)
			ok = false
		}
	}
	if !ok {
		if !d.Create && !s.has("resurrects") {
			return session.ErrNotFound
		}
		e = &refEntry{values: map[string][]byte{}, created: d.Created, life: d.Expires.Sub(d.Touched)}
		s.m[id] = e
	}
	if !s.has("ignoresDel") {
		for _, k := range d.Del {
			delete(e.values, k)
		}
	}
	switch {
	case s.has("wholeRecord"):
		// Read the record, build the new one outside the lock, write it all
		// back: the blob-saving store whose concurrent requests overwrite
		// each other.
		values := maps2(e.values)
		s.mu.Unlock()
		for k, v := range d.Set {
			values[k] = s.copyIn(v)
		}
		time.Sleep(50 * time.Microsecond)
		s.mu.Lock()
		e.values = values
	case s.has("tornValues"):
		// Write each value in two halves with the lock released between.
		for k, v := range d.Set {
			half := len(v) / 2
			e.values[k] = make([]byte, len(v))
			copy(e.values[k], v[:half])
			s.mu.Unlock()
			time.Sleep(20 * time.Microsecond)
			s.mu.Lock()
			copy(e.values[k][half:], v[half:])
		}
	case s.has("perKeyWrites"):
		// One key at a time, like separate HSETs outside a transaction.
		for k, v := range d.Set {
			e.values[k] = s.copyIn(v)
			s.mu.Unlock()
			time.Sleep(5 * time.Microsecond)
			s.mu.Lock()
		}
	default:
		for k, v := range d.Set {
			e.values[k] = s.copyIn(v)
		}
	}
	if s.has("dropsEmptySession") && len(e.values) == 0 {
		s.drop(id)
		return nil
	}
	if d.SetPrincipal {
		if !s.has("staleIndex") {
			delete(s.index[e.principal], id)
			s.indexAdd(d.Principal, id)
		} else if !ok {
			s.indexAdd(d.Principal, id)
		}
		e.principal = d.Principal
	} else if !ok {
		s.indexAdd("", id)
	}
	if !d.Touched.IsZero() {
		e.touched = d.Touched
	}
	switch {
	case !d.Expires.IsZero():
		e.expires = d.Expires
	case s.has("refreshesTTLOnWrite"):
		e.expires = time.Now().Add(e.life)
	}
	return nil
}

func maps2(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (s *refStore) Delete(ctx context.Context, id string) error {
	if err := s.ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(id)
	return nil
}

func (s *refStore) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	if err := s.ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok || !s.live(e) {
		return session.ErrNotFound
	}
	e.touched, e.expires = touched, expires
	return nil
}

func (s *refStore) FindByPrincipal(ctx context.Context, p string) ([]string, error) {
	if err := s.ctxErr(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := []string{}
	for id := range s.index[p] {
		e, ok := s.m[id]
		if s.has("staleIndex") || ok && e.principal == p && (s.live(e) || s.has("indexKeepsExpired")) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (s *refStore) DeleteByPrincipal(ctx context.Context, p string) (int, error) {
	ids, err := s.FindByPrincipal(ctx, p)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := s.m[id]; ok {
			n++
		}
		s.drop(id)
	}
	return n, nil
}

func (s *refStore) Count(ctx context.Context) (int, error) {
	if err := s.ctxErr(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.m {
		if s.live(e) || s.has("countsExpired") {
			n++
		}
	}
	return n, nil
}

func (s *refStore) Range(ctx context.Context, fn func(*session.Record) bool) error {
	if err := s.ctxErr(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	if s.has("holdsLockInRange") {
		defer s.mu.Unlock()
		for id, e := range s.m {
			if s.live(e) && !fn(s.record(id, e)) {
				return nil
			}
		}
		return nil
	}
	var recs []*session.Record
	for id, e := range s.m {
		if s.live(e) {
			recs = append(recs, s.record(id, e))
		}
	}
	s.mu.Unlock()
	for _, r := range recs {
		if !fn(r) && !s.has("rangeIgnoresStop") {
			return nil
		}
	}
	return nil
}
