package sqlstore_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

// TestRoundTripsThroughTheMiddleware serves requests through a real
// session.Manager and middleware on each real database, behind a driver
// that counts what the store sends, and pins down the cost of each kind of
// request: a read-only request is exactly one query and no write; an
// untouched one sends nothing; a write is one transaction of an UPDATE and
// one upsert; a keep-alive is a single UPDATE.
func TestRoundTripsThroughTheMiddleware(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			drv, dsn := be.open(t)
			db, c, err := openCounting(drv, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })

			if _, err := sqlstore.New(db, sqlstore.Options{}); err == nil {
				t.Errorf("New on a wrapped driver without Options.Dialect succeeded, want an error asking for it")
			}
			store := newStore(t, db, sqlstore.Options{Dialect: be.dialect, CleanupInterval: -1})

			// The Manager's clock runs ahead of the store's by offset, so
			// the test can make a session's keep-alive due without waiting.
			var offset atomic.Int64
			m, err := session.NewManager(store, session.Options{
				Cookie: session.CookieOptions{Insecure: true},
				Now:    func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
			})
			if err != nil {
				t.Fatal(err)
			}
			login := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := session.FromContext(r.Context())
				if err := s.Renew(); err != nil {
					t.Errorf("Renew: %v", err)
				}
				_ = s.Put("user", "alice")
				if err := s.SetPrincipal("alice"); err != nil {
					t.Errorf("SetPrincipal: %v", err)
				}
			}))
			read := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
			}))
			untouched := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "static")
			}))
			write := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := session.FromContext(r.Context())
				n := s.GetInt("counter") + 1
				_ = s.Put("counter", n)
				io.WriteString(w, strconv.Itoa(n))
			}))

			rec := httptest.NewRecorder()
			login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
			if rec.Code != http.StatusOK || len(rec.Result().Cookies()) == 0 {
				t.Fatalf("login: status %d, cookies %v; want 200 and a session cookie", rec.Code, rec.Result().Cookies())
			}
			cookie := rec.Result().Cookies()[0]
			serve := func(h http.Handler, what string) (string, snapshot) {
				t.Helper()
				before := c.snapshot()
				r := httptest.NewRequest("GET", "/", nil)
				r.AddCookie(cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: status %d (%s), want 200", what, rec.Code, rec.Body.String())
				}
				return rec.Body.String(), c.snapshot().minus(before)
			}

			if body, got := serve(read, "read-only request"); body != "alice" {
				t.Errorf("read-only request answered %q, want alice", body)
			} else if want := (snapshot{Queries: 1}); got != want {
				t.Errorf("read-only request sent %v; want exactly one query and no write (%v)", got, want)
			}
			if _, got := serve(untouched, "untouched request"); got != (snapshot{}) {
				t.Errorf("request that never touched its session sent %v; want nothing", got)
			}
			if body, got := serve(write, "write request"); body != "1" {
				t.Errorf("write request answered %q, want 1", body)
			} else if want := (snapshot{Queries: 1, Execs: 2, Begins: 1, Commits: 1}); got != want {
				t.Errorf("write request sent %v; want the load, then one transaction of an UPDATE of the session and one upsert (%v)", got, want)
			}
			// Past TouchFraction × IdleTimeout of the last activity, a
			// read-only request keeps the session alive with one UPDATE.
			offset.Store(int64(4 * time.Minute))
			if body, got := serve(read, "read-only request due for a keep-alive"); body != "alice" {
				t.Errorf("read-only request answered %q, want alice", body)
			} else if want := (snapshot{Queries: 1, Execs: 1}); got != want {
				t.Errorf("read-only request due for a keep-alive sent %v; want the load and a single UPDATE (%v)", got, want)
			}
			if _, got := serve(read, "read-only request after the keep-alive"); got != (snapshot{Queries: 1}) {
				t.Errorf("read-only request just after a keep-alive sent %v; want one query", got)
			}
		})
	}
}
