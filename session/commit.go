package session

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// commit saves the request's changes and sets the cookie (or header) on w's
// header. It runs once, before the first byte of the response. It returns
// the error to hand to ErrorHandler, or nil.
func (s *Session) commit(h http.Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.committed {
		return nil
	}
	s.committed = true
	if !s.loaded {
		return nil // never touched: no store I/O at all
	}
	if s.err != nil {
		return s.err
	}
	m := s.m
	now := m.opts.Now()
	changed := len(s.set) > 0 || len(s.del) > 0 || s.setPrinc

	if !s.exists && s.renewedFrom != "" {
		if err := s.checkRenewedFrom(now); err != nil {
			return err
		}
	}

	switch {
	case !s.exists && (len(s.values) > 0 || s.principal != ""):
		// A fresh or renewed session with something worth keeping.
		if s.id == "" {
			s.id = NewID()
		}
		d := Delta{
			Create:       true,
			Set:          s.values,
			SetPrincipal: s.principal != "",
			Principal:    s.principal,
			Created:      now,
			Touched:      now,
			Expires:      m.expiresAt(now, now),
		}
		if err := m.store.Apply(s.ctx, s.id, d); err != nil {
			m.stats.errors.Add(1)
			return fmt.Errorf("create session %s: %w", Fingerprint(s.id), err)
		}
		m.stats.creates.Add(1)
		s.exists, s.created, s.touched = true, now, now
		m.setID(h, s.id, d.Expires)
		if m.opts.Events.Created != nil {
			m.opts.Events.Created(s.ctx, s.id)
		}

	case s.exists && changed:
		d := Delta{
			Set:          s.set,
			Del:          slices.Collect(maps.Keys(s.del)),
			SetPrincipal: s.setPrinc,
			Principal:    s.principal,
			Touched:      now,
			Expires:      m.expiresAt(s.created, now),
		}
		err := m.store.Apply(s.ctx, s.id, d)
		switch {
		case errors.Is(err, ErrNotFound):
			// Destroyed by a concurrent request (a logout on another tab):
			// the write is dropped rather than bringing the session back.
			m.opts.Logger.InfoContext(s.ctx, "session vanished during request; changes dropped", "session", Fingerprint(s.id))
			s.exists = false
			m.clearID(h)
			return nil
		case err != nil:
			m.stats.errors.Add(1)
			return fmt.Errorf("save session %s: %w", Fingerprint(s.id), err)
		}
		m.stats.updates.Add(1)
		if m.opts.Cookie.Persist {
			m.setID(h, s.id, d.Expires)
		}

	case s.exists && now.Sub(s.touched) >= m.touchEvery():
		expires := m.expiresAt(s.created, now)
		var err error
		if m.toucher != nil {
			err = m.toucher.Touch(s.ctx, s.id, now, expires)
		} else {
			err = m.store.Apply(s.ctx, s.id, Delta{Touched: now, Expires: expires})
		}
		switch {
		case errors.Is(err, ErrNotFound):
			s.exists = false
			m.clearID(h)
			return nil
		case err != nil:
			// A failed keep-alive loses nothing the user did; log it and
			// let the response through.
			m.stats.errors.Add(1)
			m.opts.Logger.WarnContext(s.ctx, "touch session", "session", Fingerprint(s.id), "error", err)
		default:
			m.stats.touches.Add(1)
			if m.opts.Cookie.Persist {
				m.setID(h, s.id, expires)
			}
		}
	}

	// Old ids go only after the new one is safely stored, so a failure in
	// between leaves the user logged in rather than out.
	for _, id := range s.dropIDs {
		if err := m.store.Delete(s.ctx, id); err != nil {
			m.stats.errors.Add(1)
			return fmt.Errorf("delete session %s: %w", Fingerprint(id), err)
		}
		m.stats.deletes.Add(1)
	}
	if s.destroyed && m.opts.Events.Destroyed != nil {
		for _, id := range s.dropIDs {
			m.opts.Events.Destroyed(s.ctx, id)
		}
	}
	if len(s.dropIDs) > 0 && !s.exists {
		m.clearID(h)
	}
	return nil
}

// checkRenewedFrom makes sure the session Renew moved away from still
// exists before its data is stored under the new id: if a concurrent request
// destroyed it (a logout in another tab), carrying its values over would
// bring the logged-out session back under a new name. Then only what this
// request itself wrote is kept. The check is a touch of the old id, one
// round trip paid only by requests that renew (logins). The caller holds
// s.mu.
func (s *Session) checkRenewedFrom(now time.Time) error {
	m := s.m
	expires := m.expiresAt(s.created, now)
	var err error
	if m.toucher != nil {
		err = m.toucher.Touch(s.ctx, s.renewedFrom, now, expires)
	} else {
		err = m.store.Apply(s.ctx, s.renewedFrom, Delta{Touched: now, Expires: expires})
	}
	switch {
	case errors.Is(err, ErrNotFound):
		m.opts.Logger.InfoContext(s.ctx, "renewed session was destroyed during the request; its data is not carried over",
			"session", Fingerprint(s.renewedFrom))
		s.values = maps.Clone(s.set)
		s.size = 0
		for k, v := range s.values {
			s.size += len(k) + len(v)
		}
		if !s.setPrinc {
			s.principal = ""
		}
		return nil
	case err != nil:
		m.stats.errors.Add(1)
		return fmt.Errorf("renew session %s: %w", Fingerprint(s.renewedFrom), err)
	}
	return nil
}

// touchEvery is how stale the recorded activity may get before an
// unchanged request writes a touch.
func (m *Manager) touchEvery() time.Duration {
	return time.Duration(float64(m.opts.IdleTimeout) * m.opts.TouchFraction)
}
