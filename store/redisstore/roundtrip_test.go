package redisstore_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
)

// tripLog is a go-redis hook that records every round trip the store's
// client makes: one entry per command or pipeline, listing its commands.
type tripLog struct {
	mu    sync.Mutex
	trips [][]string
}

func (l *tripLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *tripLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *tripLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.add(cmds...)
		return next(ctx, cmds)
	}
}

func (l *tripLog) add(cmds ...redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.Name()
	}
	l.mu.Lock()
	l.trips = append(l.trips, names)
	l.mu.Unlock()
}

// take returns the round trips since the last call and forgets them.
func (l *tripLog) take() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trips
	l.trips = nil
	return t
}

// commandStats returns the server's per-command call counts (INFO
// commandstats), leaving out INFO itself.
func commandStats(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// diff returns the counts that changed from before to after.
func diff(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// TestRoundTripsThroughTheManager drives a real session.Manager and its
// middleware and counts what reaches Redis, both from the client (a hook:
// round trips) and from the server (INFO commandstats: commands executed,
// including those inside scripts). A read-only request costs exactly one
// round trip, an HGETALL; a request that changes nothing writes nothing;
// a write and a keep-alive are one script that runs one HSET and one
// PEXPIREAT.
func TestRoundTripsThroughTheManager(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	trips := &tripLog{}
	client.AddHook(trips)
	stats := standaloneClient(t, r.Addr) // unhooked, for INFO

	s := newStore(t, client, redisstore.Options{})
	var offset atomic.Int64 // the Manager's clock runs ahead by this much
	m, err := session.NewManager(s, session.Options{
		Cookie: session.CookieOptions{Insecure: true},
		Now:    func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(f func(*session.Session)) http.Handler {
		return m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f(session.FromContext(r.Context()))
		}))
	}
	login := handler(func(s *session.Session) {
		if err := s.SetPrincipal("alice"); err != nil {
			t.Errorf("SetPrincipal: %v", err)
		}
		_ = s.Put("user", "alice")
	})
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	if rec.Code != 200 || len(rec.Result().Cookies()) == 0 {
		t.Fatalf("login: status %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	cookie := rec.Result().Cookies()[0]

	steps := []struct {
		name    string
		h       http.Handler
		advance time.Duration
		trips   [][]string
		// server says which commands must have run exactly how often;
		// any other command that ran fails the step.
		server map[string]int
	}{
		{
			name:   "read-only request",
			h:      handler(func(s *session.Session) { _ = s.GetString("user") }),
			trips:  [][]string{{"hgetall"}},
			server: map[string]int{"hgetall": 1},
		},
		{
			name:   "request that never touches its session",
			h:      handler(func(s *session.Session) {}),
			trips:  nil,
			server: map[string]int{},
		},
		{
			name: "request that writes one attribute",
			h: handler(func(s *session.Session) {
				_ = s.Put("counter", s.GetInt("counter")+1)
			}),
			trips: [][]string{{"hgetall"}, {"evalsha"}},
			// The script checks the session (HMGET), writes the attribute
			// and the deadlines in one HSET and moves the TTL. The index
			// score set at login still covers the new deadline, so the
			// index is not touched.
			server: map[string]int{"hgetall": 1, "evalsha": 1, "hmget": 1, "hset": 1, "pexpireat": 1},
		},
		{
			name:    "read-only request after the touch interval: a keep-alive",
			advance: 5 * time.Minute, // past TouchFraction × IdleTimeout
			h:       handler(func(s *session.Session) { _ = s.GetString("user") }),
			trips:   [][]string{{"hgetall"}, {"evalsha"}},
			// Touched and Expires in one HSET, one PEXPIREAT: no rewrite.
			server: map[string]int{"hgetall": 1, "evalsha": 1, "hmget": 1, "hset": 1, "pexpireat": 1},
		},
	}
	for _, st := range steps {
		offset.Add(int64(st.advance))
		trips.take()
		before := commandStats(t, stats)
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		st.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("%s: status %d", st.name, rec.Code)
		}
		if got := trips.take(); !slices.EqualFunc(got, st.trips, slices.Equal) {
			t.Errorf("%s: round trips %v, want %v", st.name, got, st.trips)
		}
		got := diff(before, commandStats(t, stats))
		for cmd, n := range st.server {
			if got[cmd] != n {
				t.Errorf("%s: server ran %s %d times, want %d (all: %v)", st.name, cmd, got[cmd], n, got)
			}
		}
		for _, cmd := range slices.Sorted(maps.Keys(got)) {
			if _, ok := st.server[cmd]; !ok {
				t.Errorf("%s: server ran %s %d times, want none (all: %v)", st.name, cmd, got[cmd], got)
			}
		}
	}
}
