package memstore

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// stored reports how many entries the shards hold, expired or not.
func (s *Store) stored() int {
	n := 0
	for i := range s.t.shards {
		sh := &s.t.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// indexed reports how many principals the index holds.
func (s *Store) indexed() int {
	s.t.index.mu.Lock()
	defer s.t.index.mu.Unlock()
	return len(s.t.index.m)
}

func create(t *testing.T, s *Store, id, principal string, expires time.Time) {
	t.Helper()
	d := session.Delta{Create: true, Set: map[string][]byte{"a": []byte("1")}, SetPrincipal: true, Principal: principal, Expires: expires}
	if err := s.Apply(context.Background(), id, d); err != nil {
		t.Fatalf("Apply(Create) = %v, want nil", err)
	}
}

func TestSweeperFreesExpiredSessionsAndTheirIndex(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := New(Options{SweepInterval: time.Millisecond, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	for i := range 100 {
		create(t, s, session.NewID(), "user"+string(rune('a'+i%5)), clock.Now().Add(time.Minute))
	}
	keep := session.NewID()
	create(t, s, keep, "keeper", clock.Now().Add(time.Hour))
	clock.Advance(2 * time.Minute)

	deadline := time.Now().Add(5 * time.Second)
	for s.stored() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after 100 sessions expired, the shards still hold %d entries, want 1 (the sweeper frees expired sessions)", s.stored())
		}
		runtime.Gosched()
	}
	if n := s.indexed(); n != 1 {
		t.Errorf("after the sweep the principal index holds %d principals, want 1 (keeper)", n)
	}
	if _, err := s.Load(context.Background(), keep); err != nil {
		t.Errorf("Load of the live session after the sweep = %v, want nil", err)
	}
}

func TestNowOptionDecidesExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := New(Options{SweepInterval: -1, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	id := session.NewID()
	create(t, s, id, "", clock.Now().Add(time.Minute))
	clock.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Load(context.Background(), id); err != nil {
		t.Fatalf("Load 1 ns before Expires = %v, want the session", err)
	}
	clock.Advance(time.Nanosecond)
	if _, err := s.Load(context.Background(), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load at Expires = %v, want ErrNotFound", err)
	}
	// With the sweeper disabled the entry stays until its id is written.
	if n := s.stored(); n != 1 {
		t.Fatalf("stored entries with the sweeper disabled = %d, want 1", n)
	}
	if err := s.Apply(context.Background(), id, session.Delta{Set: map[string][]byte{"b": nil}}); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Apply to the expired session = %v, want ErrNotFound", err)
	}
	if n := s.stored(); n != 0 {
		t.Errorf("after a refused Apply to an expired session the shards hold %d entries, want 0 (it is freed)", n)
	}
}

func TestCloseIsIdempotentAndEndsEveryMethod(t *testing.T) {
	s := New(Options{SweepInterval: time.Millisecond})
	id := session.NewID()
	create(t, s, id, "alice", time.Now().Add(time.Hour))
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d = %v, want nil", i+1, err)
		}
	}
	select {
	case <-s.sw.done:
	default:
		t.Fatal("after Close returned the sweeper goroutine is still running")
	}
	ctx := context.Background()
	_, errLoad := s.Load(ctx, id)
	_, errFind := s.FindByPrincipal(ctx, "alice")
	_, errDel := s.DeleteByPrincipal(ctx, "alice")
	_, errCount := s.Count(ctx)
	for name, err := range map[string]error{
		"Load":              errLoad,
		"Apply":             s.Apply(ctx, id, session.Delta{Create: true}),
		"Delete":            s.Delete(ctx, id),
		"Touch":             s.Touch(ctx, id, time.Now(), time.Now()),
		"FindByPrincipal":   errFind,
		"DeleteByPrincipal": errDel,
		"Count":             errCount,
		"Range":             s.Range(ctx, func(*session.Record) bool { return true }),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// TestForgottenStoreStopsItsSweeper: a Store dropped without Close does not
// leak its goroutine for the life of the process.
func TestForgottenStoreStopsItsSweeper(t *testing.T) {
	s := New(Options{SweepInterval: time.Hour})
	done := s.sw.done
	s = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-done:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("10 s after the last reference to a Store was dropped its sweeper still runs")
		}
		runtime.Gosched()
	}
}
