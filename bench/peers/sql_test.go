package peers

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alexedwards/scs/mysqlstore"
	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

// sqlPeer is one database with both libraries' stores on it.
type sqlPeer struct {
	roam session.Store
	scs  scs.Store
}

// postgresPeers starts a PostgreSQL of the benchmark's own and puts roam's
// sqlstore (database/sql over pgx) and scs's pgxstore (a pgxpool) on it,
// each in its own tables.
func postgresPeers(tb testing.TB) sqlPeer {
	pg := testserver.Postgres(tb)
	ctx := context.Background()
	db, err := sql.Open("pgx", pg.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	pool, err := pgxpool.New(ctx, pg.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	// The schema pgxstore's README gives.
	for _, q := range []string{
		"CREATE TABLE sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)",
		"CREATE INDEX sessions_expiry_idx ON sessions (expiry)",
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			tb.Fatal(err)
		}
	}
	return sqlPeer{roam: roamSQL(tb, db), scs: pgxstore.NewWithCleanupInterval(pool, 0)}
}

// mariadbPeers starts a MariaDB of the benchmark's own and puts roam's
// sqlstore and scs's mysqlstore on it, both over go-sql-driver/mysql with
// the same DSN.
func mariadbPeers(tb testing.TB) sqlPeer {
	m := testserver.MariaDB(tb)
	cfg, err := mysql.ParseDSN(m.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	// One round trip per statement for both libraries, as roam's
	// mysql:// spec sets up.
	cfg.InterpolateParams = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	// The schema mysqlstore's README gives.
	for _, q := range []string{
		"CREATE TABLE sessions (token CHAR(43) PRIMARY KEY, data BLOB NOT NULL, expiry TIMESTAMP(6) NOT NULL)",
		"CREATE INDEX sessions_expiry_idx ON sessions (expiry)",
	} {
		if _, err := db.Exec(q); err != nil {
			tb.Fatal(err)
		}
	}
	return sqlPeer{roam: roamSQL(tb, db), scs: mysqlstore.NewWithCleanupInterval(db, 0)}
}

func roamSQL(tb testing.TB, db *sql.DB) *sqlstore.Store {
	s, err := sqlstore.New(db, sqlstore.Options{CleanupInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// handlers are the three requests both libraries serve: one that never
// touches the session, one that reads a value, one that writes one.
type handlers struct{ login, untouched, read, write http.Handler }

func roamHandlers(tb testing.TB, store session.Store) handlers {
	m, err := session.NewManager(store, session.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return handlers{
		login: m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = session.FromContext(r.Context()).Put("user", "alice")
		})),
		untouched: m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})),
		read: m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
		})),
		write: m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := session.FromContext(r.Context())
			_ = s.Put("counter", s.GetInt("counter")+1)
		})),
	}
}

func scsHandlers(store scs.Store) handlers {
	sm := scs.New()
	sm.Store = store
	return handlers{
		login: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "user", "alice")
		})),
		untouched: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})),
		read: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, sm.GetString(r.Context(), "user"))
		})),
		write: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "counter", sm.GetInt(r.Context(), "counter")+1)
		})),
	}
}

// loginCookie logs in through h and returns the session cookie.
func loginCookie(tb testing.TB, h handlers) *http.Cookie {
	rec := httptest.NewRecorder()
	h.login.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	cs := rec.Result().Cookies()
	if rec.Code != http.StatusOK || len(cs) == 0 {
		tb.Fatalf("login: status %d, cookies %v", rec.Code, cs)
	}
	return cs[0]
}

// BenchmarkSQLMiddleware runs the three requests through roam with sqlstore
// and through scs with its store for the same database (pgxstore,
// mysqlstore), on one server of the benchmark's own per database. Compare
// roam/X with scs/X of the same database from the same run. scs loads the
// session on every request with a cookie (so untouched costs it a query)
// and saves the whole blob in one statement; roam loads lazily and saves a
// delta in a transaction that locks the session row first, which is what
// keeps concurrent writes to different keys.
func BenchmarkSQLMiddleware(b *testing.B) {
	for _, db := range []struct {
		name  string
		start func(testing.TB) sqlPeer
	}{{"postgres", postgresPeers}, {"mariadb", mariadbPeers}} {
		b.Run(db.name, func(b *testing.B) {
			p := db.start(b)
			for _, lib := range []struct {
				name string
				h    handlers
			}{{"roam", roamHandlers(b, p.roam)}, {"scs", scsHandlers(p.scs)}} {
				b.Run(lib.name, func(b *testing.B) {
					cookie := loginCookie(b, lib.h)
					b.Run("untouched", func(b *testing.B) { run(b, lib.h.untouched, cookie) })
					b.Run("read", func(b *testing.B) { run(b, lib.h.read, cookie) })
					b.Run("write", func(b *testing.B) { run(b, lib.h.write, cookie) })
				})
			}
		})
	}
}

// TestSQLPeersKeepTheSession checks the benchmark's setup: each library
// round-trips a session through its SQL store on PostgreSQL, so the numbers
// compare like with like. (MariaDB is left to the benchmark: a server of its
// own takes seconds to install.)
func TestSQLPeersKeepTheSession(t *testing.T) {
	p := postgresPeers(t)
	for name, h := range map[string]handlers{"roam": roamHandlers(t, p.roam), "scs": scsHandlers(p.scs)} {
		cookie := loginCookie(t, h)
		for range 2 {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(cookie)
			rec := httptest.NewRecorder()
			h.write.ServeHTTP(rec, r)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.read.ServeHTTP(rec, r)
		if rec.Body.String() != "alice" {
			t.Errorf("%s: read back %q, want alice", name, rec.Body.String())
		}
	}
}
