package memcachedstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// TestItemOutlivesExpires checks, on a real memcached, the rounding of item
// lifetimes: memcached's clock advances about once a second, so an item
// given a TTL of ceil(seconds left) can die a second or more before Expires. Sessions
// created at several phases of that tick, each with 1.0–1.5 s to live, must
// keep their item until Expires; Load then ends them at Expires, whatever
// the item's TTL.
func TestItemOutlivesExpires(t *testing.T) {
	t.Parallel() // mostly waiting on servers and clocks
	f := newFixture(t, 1, memcachedstore.Options{})
	const sessions = 6
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	for i := range sessions {
		wg.Go(func() { errs[i] = outlives(t, f, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

func outlives(t *testing.T, f *fixture, i int) error {
	ctx := t.Context()
	// Spread the creations over one second of memcached's clock.
	if err := waitUntil(t, time.Now().Add(time.Duration(i)*time.Second/sessionsPhases)); err != nil {
		return err
	}
	id := session.NewID()
	now := time.Now()
	life := time.Second + time.Duration(i)*100*time.Millisecond
	d := session.Delta{Create: true, Set: map[string][]byte{"a": []byte("1")}, Created: now, Touched: now, Expires: now.Add(life)}
	if err := f.store.Apply(ctx, id, d); err != nil {
		return err
	}
	// Probe the raw item until just before Expires: a miss that began
	// before Expires is memcached dropping it early.
	for {
		start := time.Now()
		if !start.Before(d.Expires.Add(-5 * time.Millisecond)) {
			break
		}
		_, err := f.client.Get(f.prefix + id)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return fmt.Errorf("session %d (%v to live): memcached dropped its item %v before Expires", i, life, d.Expires.Sub(start).Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		if err := waitUntil(t, start.Add(20*time.Millisecond)); err != nil {
			return err
		}
	}
	if err := waitUntil(t, d.Expires); err != nil {
		return err
	}
	if rec, err := f.store.Load(ctx, id); !errors.Is(err, session.ErrNotFound) {
		return fmt.Errorf("session %d: Load at its Expires = %v, %v; want ErrNotFound (the item may live on, the session may not)", i, rec, err)
	}
	return nil
}

const sessionsPhases = 6

// waitUntil blocks until the clock passes at or the test ends.
func waitUntil(t *testing.T, at time.Time) error {
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-t.Context().Done():
		return t.Context().Err()
	}
}
