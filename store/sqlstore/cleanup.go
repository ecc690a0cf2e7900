package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// maxBatchesPerRun bounds one DeleteExpired: a backlog larger than
// maxBatchesPerRun × CleanupBatch is finished by the next runs rather than
// by one that never ends.
const maxBatchesPerRun = 1000

// DeleteExpired deletes the rows of expired sessions (and their attributes)
// in statements of at most Options.CleanupBatch sessions each, until none
// is left or ctx ends, and reports how many sessions it deleted. The
// cleanup loop calls it; a program that turned the loop off may call it
// from a job of its own. Each batch is its own short transaction, bounded
// by Options.Timeout. It returns ErrClosed after Close and a wrapped driver
// error when the database fails, with the count deleted so far.
func (s *Store) DeleteExpired(ctx context.Context) (int, error) {
	total := 0
	for range maxBatchesPerRun {
		n, err := s.deleteBatch(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n < s.opts.CleanupBatch {
			return total, nil
		}
	}
	return total, nil
}

// deleteBatch deletes up to CleanupBatch expired sessions.
func (s *Store) deleteBatch(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "delete expired")
	if err != nil {
		return 0, err
	}
	defer cancel()
	now := s.now().UnixMicro()
	var n int64
	err = s.write(ctx, func(ctx context.Context) error {
		if s.opts.Dialect == MySQL {
			ids, err := s.selectIDs(ctx, s.q.expiredIDs, now, s.opts.CleanupBatch)
			if err != nil {
				return err
			}
			n, err = s.deleteLocked(ctx, ids, "expires <= ?", now)
			return err
		}
		res, err := s.db.ExecContext(ctx, s.q.cleanup, now, s.opts.CleanupBatch)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return int(n), fmt.Errorf("sqlstore: delete expired sessions: %w", err)
	}
	return int(n), nil
}

// cleanupLoop runs DeleteExpired about every interval until Close. Each wait
// is drawn at random from [interval/2, 3·interval/2): app instances started
// by one deploy spread their cleanups instead of all deleting at once.
func (s *Store) cleanupLoop(interval time.Duration) {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel() // a batch in flight stops too
		case <-ctx.Done():
		}
	}()
	for {
		wait := interval/2 + time.Duration(rand.Int64N(int64(interval)))
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := s.DeleteExpired(ctx)
		switch {
		case errors.Is(err, ErrClosed), ctx.Err() != nil:
			return
		case err != nil:
			// The database may be down; the next run tries again.
			s.log.Warn("cleanup of expired sessions failed", "deleted", n, "error", err)
		case n > 0:
			s.log.Debug("deleted expired sessions", "deleted", n, "took", time.Since(start))
		}
	}
}
