package session_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// countingStore calls through to a real store and counts the calls, and can
// be told to fail: a fault injector, not a fake.
type countingStore struct {
	session.Store
	loads, applies, deletes, touches atomic.Int64
	fail                             atomic.Bool
}

var errDown = errors.New("store is down")

func (c *countingStore) Load(ctx context.Context, id string) (*session.Record, error) {
	c.loads.Add(1)
	if c.fail.Load() {
		return nil, errDown
	}
	return c.Store.Load(ctx, id)
}

func (c *countingStore) Apply(ctx context.Context, id string, d session.Delta) error {
	c.applies.Add(1)
	if c.fail.Load() {
		return errDown
	}
	return c.Store.Apply(ctx, id, d)
}

func (c *countingStore) Delete(ctx context.Context, id string) error {
	c.deletes.Add(1)
	if c.fail.Load() {
		return errDown
	}
	return c.Store.Delete(ctx, id)
}

func (c *countingStore) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	c.touches.Add(1)
	if c.fail.Load() {
		return errDown
	}
	return c.Store.(session.Toucher).Touch(ctx, id, touched, expires)
}

func (c *countingStore) FindByPrincipal(ctx context.Context, p string) ([]string, error) {
	return c.Store.(session.PrincipalIndex).FindByPrincipal(ctx, p)
}

func (c *countingStore) DeleteByPrincipal(ctx context.Context, p string) (int, error) {
	return c.Store.(session.PrincipalIndex).DeleteByPrincipal(ctx, p)
}

func (c *countingStore) calls() int64 {
	return c.loads.Load() + c.applies.Load() + c.deletes.Load() + c.touches.Load()
}

func newCounting(t *testing.T) *countingStore {
	t.Helper()
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	return &countingStore{Store: ms}
}

func newManager(t *testing.T, st session.Store, opts session.Options) *session.Manager {
	t.Helper()
	m, err := session.NewManager(st, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

// clock is a settable time source for deadline tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// do runs one request through h with the given session cookie ("" for
// none) and returns the recorder.
func do(h http.Handler, method, path, cookie string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: cookie})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// sessionCookie returns the session cookie a response set, or nil.
func sessionCookie(w *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == session.DefaultCookieName {
			return c
		}
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
