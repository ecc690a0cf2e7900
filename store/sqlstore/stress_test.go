package sqlstore_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

// TestMixedWritersAcrossSessionsDoNotFail runs every kind of write at once
// on a handful of shared sessions (creates, deltas that set and delete,
// touches, deletes, DeleteByPrincipal, and the cleanup loop), the traffic
// under which InnoDB's gap locks and PostgreSQL's row locks could deadlock.
// No call may fail with anything but ErrNotFound: the lock order prevents
// most deadlocks and the bounded retry absorbs the rest.
func TestMixedWritersAcrossSessionsDoNotFail(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		s := newStore(t, db, sqlstore.Options{CleanupInterval: 5 * time.Millisecond})
		const workers, ops, ids = 8, 60, 6
		pool := make([]string, ids)
		for i := range pool {
			pool[i] = session.NewID()
		}
		errs := make([]error, workers)
		done := make(chan int, workers)
		for w := range workers {
			go func() {
				defer func() { done <- w }()
				for i := range ops {
					id := pool[(w+i)%ids]
					now := time.Now()
					var err error
					switch (w + i) % 6 {
					case 0:
						d := createDelta(map[string][]byte{fmt.Sprintf("w%d", w): []byte("x"), "shared": []byte(fmt.Sprint(i))}, fmt.Sprintf("user%d", i%2))
						if i%5 == 0 {
							d.Expires = now.Add(time.Millisecond) // food for the cleanup loop
						}
						err = s.Apply(ctx, id, d)
					case 1, 2:
						err = s.Apply(ctx, id, session.Delta{
							Set: map[string][]byte{fmt.Sprintf("k%d", i%7): []byte("v"), "shared": []byte(fmt.Sprint(i))},
							Del: []string{fmt.Sprintf("k%d", (i+3)%7)}, Touched: now, Expires: now.Add(time.Hour),
						})
					case 3:
						err = s.Touch(ctx, id, now, now.Add(time.Hour))
					case 4:
						err = s.Delete(ctx, id)
					case 5:
						_, err = s.DeleteByPrincipal(ctx, fmt.Sprintf("user%d", i%2))
					}
					if err != nil && !errors.Is(err, session.ErrNotFound) {
						errs[w] = fmt.Errorf("worker %d op %d: %w", w, i, err)
						return
					}
				}
			}()
		}
		for range workers {
			<-done
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	})
}
