package memcachedstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// byServer creates sessions until each of the fixture's servers holds at
// least one, and returns one id per server.
func byServer(t *testing.T, f *fixture) []string {
	t.Helper()
	ids := make([]string, len(f.addrs))
	left := len(ids)
	for n := 0; left > 0; n++ {
		if n == 1000 {
			t.Fatalf("1000 sessions and still a server without one: the selector does not spread keys")
		}
		id := create(t, f.store, "user", "alice")
		if i := f.serverOf(t, f.prefix+id); ids[i] == "" {
			ids[i] = id
			left--
		}
	}
	return ids
}

// failsFast checks that err is a wrapped backend error, not ErrNotFound
// (which would log the user out), and that the call took at most a couple
// seconds (not TCP's minutes).
func failsFast(t *testing.T, what string, took time.Duration, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s with its server down = nil, want an error", what)
	case errors.Is(err, session.ErrNotFound):
		t.Errorf("%s with its server down = %v; want a backend error, not ErrNotFound (a down server must not log users out)", what, err)
	}
	// A refused connection fails at once; the limit only has to tell that
	// from waiting on TCP's own timeouts, on a loaded machine.
	if limit := 2 * time.Second; took > limit {
		t.Errorf("%s with its server down took %v, want it to fail within %v", what, took, limit)
	}
}

// TestKilledServerFailsFastAndServiceResumes: with one of three servers
// killed, its sessions' calls fail fast with an error (the Manager answers
// 503) while the other servers' sessions work; once it is back, calls
// succeed again by themselves (its sessions are gone: memcached keeps
// nothing over a restart).
func TestKilledServerFailsFastAndServiceResumes(t *testing.T) {
	t.Parallel() // mostly waiting on servers and clocks
	f := newFixture(t, 3, memcachedstore.Options{})
	ids := byServer(t, f)
	down := 1
	f.servers[down].Kill()

	ctx := t.Context()
	start := time.Now()
	_, err := f.store.Load(ctx, ids[down])
	failsFast(t, "Load", time.Since(start), err)
	start = time.Now()
	err = f.store.Apply(ctx, ids[down], session.Delta{Set: map[string][]byte{"a": []byte("1")}})
	failsFast(t, "Apply", time.Since(start), err)
	start = time.Now()
	err = f.store.Touch(ctx, ids[down], time.Now(), time.Now().Add(time.Hour))
	failsFast(t, "Touch", time.Since(start), err)
	start = time.Now()
	err = f.store.Delete(ctx, ids[down])
	failsFast(t, "Delete", time.Since(start), err)

	for i, id := range ids {
		if i == down {
			continue
		}
		if _, err := f.store.Load(ctx, id); err != nil {
			t.Errorf("Load of a session on live server %d while server %d is down = %v, want it", i, down, err)
		}
		if err := f.store.Apply(ctx, id, session.Delta{Set: map[string][]byte{"still": []byte("here")}}); err != nil {
			t.Errorf("Apply to a session on live server %d = %v, want nil", i, err)
		}
	}

	f.servers[down].Restart()
	// The first calls after the restart must already succeed: the client's
	// pooled connections to the old process are dead, and the store
	// redials instead of failing a request on each of them.
	if _, err := f.store.Load(ctx, ids[down]); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Load of a session the restarted server held = %v, want ErrNotFound (memcached is a cache: it came back empty)", err)
	}
	for range 5 {
		id := ""
		for id == "" || f.serverOf(t, f.prefix+id) != down {
			id = session.NewID()
		}
		now := time.Now()
		if err := f.store.Apply(ctx, id, session.Delta{Create: true, Set: map[string][]byte{"user": []byte("bob")}, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatalf("Apply(Create) on the restarted server = %v, want nil: service did not resume", err)
		}
		if _, err := f.store.Load(ctx, id); err != nil {
			t.Fatalf("Load on the restarted server = %v, want the new session", err)
		}
	}
}

// TestStaleConnectionsAfterRestartAreRedialed fills the client's pool with
// connections, restarts the only server, and expects no call to fail on
// the dead pooled connections.
func TestStaleConnectionsAfterRestartAreRedialed(t *testing.T) {
	t.Parallel() // mostly waiting on servers and clocks
	f := newFixture(t, 1, memcachedstore.Options{})
	ctx := t.Context()
	// Several concurrent loads leave several idle connections in the pool.
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = create(t, f.store, "n", "1")
	}
	done := make(chan error, len(ids))
	for _, id := range ids {
		go func() { _, err := f.store.Load(ctx, id); done <- err }()
	}
	for range ids {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	f.servers[0].Restart()
	for i, id := range ids {
		if _, err := f.store.Load(ctx, id); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Load %d after the server restarted = %v, want ErrNotFound (empty server), not a dead-connection error", i, err)
		}
	}
}

// TestHungServerTimesOut: a server that accepts connections but never
// answers (SIGSTOP) costs a request the client's Timeout, not forever, and
// answers again once it resumes.
func TestHungServerTimesOut(t *testing.T) {
	t.Parallel() // mostly waiting on servers and clocks
	f := newFixture(t, 1, memcachedstore.Options{})
	const timeout = 100 * time.Millisecond
	g := onServers(t, f.addrs, memcachedstore.ClientOptions{Timeout: timeout}, memcachedstore.Options{Prefix: f.prefix})
	id := create(t, g.store, "user", "alice")
	p := f.servers[0].Proc()
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, p.PID())
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			_ = p.Thaw()
		}
	})
	start := time.Now()
	_, err := g.store.Load(t.Context(), id)
	took := time.Since(start)
	if err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("Load from a hung server = %v, want a timeout error", err)
	}
	if took < timeout || took > 10*timeout {
		t.Errorf("Load from a hung server returned after %v, want about the %v timeout", took, timeout)
	}
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	// A thawed process on a loaded machine may take longer than the short
	// timeout to be scheduled: poll, with a deadline, until it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := g.store.Load(t.Context(), id)
		if err == nil {
			break
		}
		if errors.Is(err, session.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("Load after the server resumed = %v, want the session", err)
		}
	}
}

// waitStopped waits until every thread of pid is stopped: SIGSTOP is
// delivered asynchronously, and proc's Freeze returns once it is sent, so a
// request right after it can still be answered. It reads /proc (Linux).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		t.Skipf("cannot see the threads of pid %d in /proc (%v): this test needs Linux", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, task := range tasks {
		for {
			b, err := os.ReadFile(task)
			// The state follows the command name, which is in parentheses.
			if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d thread %s not stopped 5 s after SIGSTOP", pid, task)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
