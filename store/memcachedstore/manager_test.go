package memcachedstore_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// counting passes every call through to the real store and counts it.
type counting struct {
	*memcachedstore.Store
	loads, applies, deletes, touches atomic.Int64
}

func (c *counting) Load(ctx context.Context, id string) (*session.Record, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, id)
}

func (c *counting) Apply(ctx context.Context, id string, d session.Delta) error {
	c.applies.Add(1)
	return c.Store.Apply(ctx, id, d)
}

func (c *counting) Delete(ctx context.Context, id string) error {
	c.deletes.Add(1)
	return c.Store.Delete(ctx, id)
}

func (c *counting) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	c.touches.Add(1)
	return c.Store.Touch(ctx, id, touched, expires)
}

// demo is a Manager with its middleware around three handlers.
func demo(t *testing.T, st session.Store) http.Handler {
	t.Helper()
	m, err := session.NewManager(st, session.Options{
		Cookie: session.CookieOptions{Insecure: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := s.Renew(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := s.Put("user", "alice"); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
	})
	return m.Middleware(mux)
}

func login(t *testing.T, h http.Handler) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/login", nil))
	if w.Code != 200 || len(w.Result().Cookies()) != 1 {
		t.Fatalf("POST /login = %d with cookies %v, want 200 and a session cookie", w.Code, w.Result().Cookies())
	}
	return w.Result().Cookies()[0]
}

func me(h http.Handler, c *http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/me", nil)
	r.AddCookie(c)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestReadOnlyRequestIsOneGet: a request that only reads its session costs
// one memcached get and no write, counted both at the store and by the
// servers' own stats.
func TestReadOnlyRequestIsOneGet(t *testing.T) {
	f := newFixture(t, 3, memcachedstore.Options{})
	st := &counting{Store: f.store}
	h := demo(t, st)
	cookie := login(t, h)

	const requests = 10
	before := sumCommands(t, f.addrs)
	for _, c := range []*atomic.Int64{&st.loads, &st.applies, &st.deletes, &st.touches} {
		c.Store(0)
	}
	for range requests {
		if w := me(h, cookie); w.Code != 200 || w.Body.String() != "alice" {
			t.Fatalf("GET /me = %d %q, want 200 alice", w.Code, w.Body.String())
		}
	}
	got := sumCommands(t, f.addrs).minus(before)
	if got != (commands{get: requests}) {
		t.Errorf("%d read-only requests made memcached commands %+v, want exactly %d gets and nothing else", requests, got, requests)
	}
	if l, a, d, tc := st.loads.Load(), st.applies.Load(), st.deletes.Load(), st.touches.Load(); l != requests || a+d+tc != 0 {
		t.Errorf("%d read-only requests: store calls loads=%d applies=%d deletes=%d touches=%d, want %d loads only",
			requests, l, a, d, tc, requests)
	}
}

// TestManagerAnswers503WhileTheServerIsDown: a logged-in user whose
// memcached is down gets 503, not a fresh anonymous session; once the
// server is back (empty: memcached keeps nothing) the user is logged out
// and can log in again, with no restart of the application.
func TestManagerAnswers503WhileTheServerIsDown(t *testing.T) {
	t.Parallel() // mostly waiting on servers and clocks
	f := newFixture(t, 1, memcachedstore.Options{})
	h := demo(t, f.store)
	cookie := login(t, h)

	f.servers[0].Kill()
	if w := me(h, cookie); w.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /me with memcached down = %d %q, want 503", w.Code, w.Body.String())
	}
	f.servers[0].Restart()
	if w := me(h, cookie); w.Code != 200 || w.Body.String() != "" {
		t.Errorf("GET /me after memcached restarted empty = %d %q, want 200 and no user (the session was lost with the server)", w.Code, w.Body.String())
	}
	again := login(t, h)
	if w := me(h, again); w.Code != 200 || w.Body.String() != "alice" {
		t.Errorf("GET /me after logging in again = %d %q, want 200 alice", w.Code, w.Body.String())
	}
}
