package demoapp

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// countingStore passes every call through to a real store and counts them,
// so a test can assert that a request did (or did not) write.
type countingStore struct {
	session.Store
	loads, applies, deletes atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, id string) (*session.Record, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, id)
}

func (c *countingStore) Apply(ctx context.Context, id string, d session.Delta) error {
	c.applies.Add(1)
	return c.Store.Apply(ctx, id, d)
}

func (c *countingStore) Delete(ctx context.Context, id string) error {
	c.deletes.Add(1)
	return c.Store.Delete(ctx, id)
}

func (c *countingStore) writes() int64 { return c.applies.Load() + c.deletes.Load() }

// newStore returns a real memstore behind a counting wrapper.
func newStore(t *testing.T) *countingStore {
	t.Helper()
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	return &countingStore{Store: ms}
}

// newApp returns an App for node on store, with a cookie that works over
// plain http (httptest servers are http).
func newApp(t *testing.T, node string, store session.Store) *App {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr, err := session.NewManager(store, session.Options{
		Cookie: session.CookieOptions{Insecure: true},
		Logger: logger,
	})
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	app, err := New(Config{NodeID: node, Manager: mgr, Logger: logger, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return app
}

// client is a browser-like client of one test server: a cookie jar and no
// redirect following, so tests see the 303s.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, srv *httptest.Server) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: srv.URL, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the response with its body read.
func (c *client) do(method, path, contentType, body string, header ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func (c *client) login(user, password string) (*http.Response, string) {
	c.t.Helper()
	form := url.Values{"username": {user}, "password": {password}}.Encode()
	return c.do("POST", "/login", "application/x-www-form-urlencoded", form)
}

// sessionCookie returns the session cookie the jar holds, or "".
func (c *client) sessionCookie() string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == session.DefaultCookieName {
			return ck.Value
		}
	}
	return ""
}

func (c *client) setSessionCookie(v string) {
	u, _ := url.Parse(c.base)
	c.hc.Jar.SetCookies(u, []*http.Cookie{{Name: session.DefaultCookieName, Value: v, Path: "/"}})
}

// wantStatus fails the test unless resp has the status code.
func wantStatus(t *testing.T, what string, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s: status %d, want %d; body: %.300s", what, resp.StatusCode, code, body)
	}
}

// decodeJSON decodes body into a map, failing the test on malformed JSON.
func decodeJSON(t *testing.T, what, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%s: body is not a JSON object: %v; body: %q", what, err, body)
	}
	return m
}

// syncBuffer collects a logger's output: the server goroutine writes, the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
