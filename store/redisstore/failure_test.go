package redisstore_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
)

// TestDownServerFailsFastAndServiceResumes kills the server under a
// Manager: requests get a 503 quickly (not a hang, not a fresh anonymous
// session that would log the user out), and once the server is back the
// same cookie works again without restarting anything.
func TestDownServerFailsFastAndServiceResumes(t *testing.T) {
	r := testserver.Redis(t, testserver.RedisOptions{AppendOnly: true})
	client := standaloneClient(t, r.Addr)
	s := newStore(t, client, redisstore.Options{})
	m, err := session.NewManager(s, session.Options{Cookie: session.CookieOptions{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	login := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Put("user", "alice"); err != nil {
			t.Errorf("Put: %v", err)
		}
	}))
	me := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(session.FromContext(r.Context()).GetString("user")))
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) == 0 {
		t.Fatal("login set no cookie")
	}
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/me", nil)
		req.AddCookie(cookies[0])
		rec := httptest.NewRecorder()
		me.ServeHTTP(rec, req)
		return rec
	}
	if rec := get(); rec.Code != 200 || rec.Body.String() != "alice" {
		t.Fatalf("before the crash: %d %q, want 200 alice", rec.Code, rec.Body.String())
	}

	r.Kill()
	start := time.Now()
	rec = get()
	took := time.Since(start)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("with the server down: status %d (body %q), want 503", rec.Code, rec.Body.String())
	}
	t.Logf("a request with the server down failed in %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("a request with the server down took %v, want it to fail fast (dial timeout 500ms)", took)
	}
	ctx := t.Context()
	if _, err := s.Load(ctx, session.NewID()); err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("Load with the server down = %v, want a store error that is not ErrNotFound", err)
	}

	r.Restart()
	waitFor(t, 10*time.Second, "requests to succeed after the server came back", func() bool {
		rec := get()
		return rec.Code == 200 && rec.Body.String() == "alice"
	})
}

// TestSlowServerTimesOut freezes the server (SIGSTOP): calls fail after
// Options.Timeout with an error wrapping context.DeadlineExceeded instead of
// waiting for the client's retries, and work again once it is thawed.
func TestSlowServerTimesOut(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	s := newStore(t, client, redisstore.Options{Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	id := session.NewID()
	now := time.Now()
	if err := s.Apply(ctx, id, session.Delta{Create: true, Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Apply(Create): %v", err)
	}
	p := r.Proc()
	if err := p.Freeze(); err != nil {
		t.Fatalf("freeze: %v", err)
	}
	t.Cleanup(func() { p.Thaw() })

	start := time.Now()
	_, err := s.Load(ctx, id)
	took := time.Since(start)
	if err == nil || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load from a frozen server = %v, want a timeout error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("Load from a frozen server: %v (not a context deadline: the client's own timeout came first)", err)
	}
	if took > 2*time.Second {
		t.Errorf("Load from a frozen server took %v, want about Options.Timeout (300ms)", took)
	}
	if err := p.Thaw(); err != nil {
		t.Fatalf("thaw: %v", err)
	}
	waitFor(t, 10*time.Second, "Load to succeed after the server was thawed", func() bool {
		_, err := s.Load(ctx, id)
		return err == nil
	})
}
