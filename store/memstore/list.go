package memstore

import (
	"context"
	"fmt"

	"github.com/roamsession/roam/session"
)

// Count reports the number of live sessions. It walks every shard, so it
// costs time in proportion to the number of sessions: it is for admin pages
// and metrics, not for the request path. It returns ErrClosed after Close
// and ctx's error when ctx is already done.
func (s *Store) Count(ctx context.Context) (int, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	// Counting live entries rather than keeping a counter: a counter would
	// include sessions that expired since the last sweep.
	now := s.t.now()
	n := 0
	for i := range s.t.shards {
		sh := &s.t.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			if !e.expired(now) {
				n++
			}
		}
		sh.mu.RUnlock()
	}
	return n, nil
}

// Range calls fn with a copy of each live session until fn returns false.
// It copies one shard at a time and calls fn with no lock held, so fn may
// use the store; a session changed or deleted meanwhile is seen before or
// after the change. Range returns ctx's error, having stopped, when ctx is
// done before it finishes (it checks between shards), and ErrClosed after
// Close.
func (s *Store) Range(ctx context.Context, fn func(*session.Record) bool) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	var batch []*session.Record
	for i := range s.t.shards {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore: range: %w", err)
		}
		sh := &s.t.shards[i]
		now := s.t.now()
		batch = batch[:0]
		sh.mu.RLock()
		for id, e := range sh.m {
			if !e.expired(now) {
				batch = append(batch, e.record(id))
			}
		}
		sh.mu.RUnlock()
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
	}
	return nil
}
