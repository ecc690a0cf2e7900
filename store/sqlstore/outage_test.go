package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

// server is what the outage test needs of a database server it owns.
type server interface {
	Stop()
	Restart()
}

// TestDatabaseOutage stops the real server under a Manager: requests then
// fail at once with a wrapped driver error (503 from the middleware, not a
// hang until a timeout and never a fresh anonymous session that would log
// the user out), and once the server is back the same session is served
// again without anything being reopened.
func TestDatabaseOutage(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		t.Parallel() // mostly waiting for servers to start and stop
		pg := testserver.Postgres(t)
		testOutage(t, "pgx", pg.DSN(), pg)
	})
	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("-short: a MariaDB of the test's own takes seconds to install")
		}
		m := testserver.MariaDB(t)
		testOutage(t, "mysql", mysqlDSN(m.DSN()), m)
	})
}

func testOutage(t *testing.T, drv, dsn string, srv server) {
	db, err := sql.Open(drv, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := newStore(t, db, sqlstore.Options{CleanupInterval: -1, Timeout: 20 * time.Second})
	m, err := session.NewManager(store, session.Options{
		Cookie: session.CookieOptions{Insecure: true},
		Logger: slog.New(slog.DiscardHandler), // the 503s are expected
	})
	if err != nil {
		t.Fatal(err)
	}
	login := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Put("user", "alice")
	}))
	me := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	cookie := rec.Result().Cookies()[0]
	get := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		me.ServeHTTP(rec, r)
		return rec
	}
	if rec := get(); rec.Code != 200 || rec.Body.String() != "alice" {
		t.Fatalf("before the outage: %d %q, want 200 alice", rec.Code, rec.Body.String())
	}

	srv.Stop()
	ctx := t.Context()
	for i := range 3 { // the pool's idle connections, then fresh ones
		_, err := store.Load(ctx, session.NewID())
		switch {
		case err == nil || errors.Is(err, session.ErrNotFound):
			t.Fatalf("Load %d with the database stopped = %v, want a driver error", i, err)
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("Load %d with the database stopped waited for its timeout (%v); want it to fail at once on the refused connection", i, err)
		}
	}
	if rec := get(); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("request with the database stopped: status %d (%q), want 503", rec.Code, rec.Body.String())
	} else if len(rec.Result().Cookies()) != 0 {
		t.Errorf("request with the database stopped set cookie %v; want the user's cookie left alone", rec.Result().Cookies())
	}

	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec := get()
		if rec.Code == 200 {
			if rec.Body.String() != "alice" {
				t.Fatalf("after the restart: %q, want the same session (alice)", rec.Body.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the restart requests still fail: %d %q", rec.Code, rec.Body.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec = httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != 200 {
		t.Errorf("login after the restart: status %d, want 200", rec.Code)
	}
}
