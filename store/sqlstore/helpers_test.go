package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/store/sqlstore"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// backend opens a database of one dialect for a test: a real server started
// by internal/testserver (shared by the test binary) or a SQLite file.
type backend struct {
	name    string
	dialect sqlstore.Dialect
	// driver and dsn open a connection to the test's database; open
	// returns both, starting (or sharing) the server.
	open func(t testing.TB) (driver, dsn string)
}

var backends = []backend{
	{name: "sqlite", dialect: sqlstore.SQLite, open: func(t testing.TB) (string, string) {
		return "sqlite", sqliteDSN(filepath.Join(t.TempDir(), "sessions.db"))
	}},
	{name: "postgres", dialect: sqlstore.Postgres, open: func(t testing.TB) (string, string) {
		return "pgx", testserver.SharedPostgres(t).DSN()
	}},
	{name: "mariadb", dialect: sqlstore.MySQL, open: func(t testing.TB) (string, string) {
		return "mysql", mysqlDSN(testserver.SharedMariaDB(t).DSN())
	}},
}

// sqliteDSN is the modernc.org/sqlite DSN docs/stores/sql.md recommends:
// WAL, so readers do not wait for the writer; a busy timeout for writers of
// other processes; synchronous=NORMAL, durable at every checkpoint; and
// BEGIN IMMEDIATE, so a transaction takes the write lock at its start.
func sqliteDSN(path string) string {
	return path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// mysqlDSN adds the settings docs/stores/sql.md recommends to the harness's
// DSN: client-side interpolation, so a statement is one round trip rather
// than prepare, execute and close.
func mysqlDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		panic(err)
	}
	cfg.InterpolateParams = true
	return cfg.FormatDSN()
}

// openDB opens the backend's database, closed when the test ends.
func openDB(t testing.TB, be backend) *sql.DB {
	t.Helper()
	drv, dsn := be.open(t)
	db, err := sql.Open(drv, dsn)
	if err != nil {
		t.Fatalf("sql.Open(%s): %v", drv, err)
	}
	// Under the shared servers' connection limits, with room for the
	// suite's parallel checks.
	db.SetMaxOpenConns(24)
	t.Cleanup(func() { db.Close() })
	return db
}

var prefixSeq atomic.Int64

// uniquePrefix returns a table prefix no other store of this binary uses.
func uniquePrefix() string { return fmt.Sprintf("t%d_", prefixSeq.Add(1)) }

// newStore returns a migrated store on db with a fresh table prefix, closed
// when the test ends.
func newStore(t testing.TB, db *sql.DB, opts sqlstore.Options) *sqlstore.Store {
	t.Helper()
	if opts.TablePrefix == "" {
		opts.TablePrefix = uniquePrefix()
	}
	s, err := sqlstore.New(db, opts)
	if err != nil {
		t.Fatalf("sqlstore.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// eachBackend runs fn as a subtest per backend, each with its own database.
func eachBackend(t *testing.T, fn func(t *testing.T, be backend, db *sql.DB)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { fn(t, be, openDB(t, be)) })
	}
}

// countRows counts the rows of a table of the store with prefix.
func countRows(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
