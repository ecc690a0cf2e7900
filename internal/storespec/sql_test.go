package storespec

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

func TestParseSQL(t *testing.T) {
	cases := []struct {
		spec, kind, driver, dsn string
		prefix                  string
		cleanup                 time.Duration
		maxConns                int
	}{
		{spec: "postgres://roam@127.0.0.1:5432/roam?sslmode=disable", kind: "postgres", driver: "pgx",
			dsn: "postgres://roam@127.0.0.1:5432/roam?sslmode=disable", maxConns: defaultSQLConns},
		{spec: "postgresql://u:p%40ss@db:5432/app?prefix=app_&cleanup=1m&max_conns=4&sslmode=require", kind: "postgres", driver: "pgx",
			dsn: "postgresql://u:p%40ss@db:5432/app?sslmode=require", prefix: "app_", cleanup: time.Minute, maxConns: 4},
		{spec: "postgres://db/app?cleanup=off", kind: "postgres", driver: "pgx", dsn: "postgres://db/app", cleanup: -1, maxConns: defaultSQLConns},
		{spec: "sqlite:///var/lib/roam/s.db", kind: "sqlite", driver: "sqlite",
			dsn:      "/var/lib/roam/s.db?_pragma=busy_timeout%285000%29&_pragma=synchronous%28NORMAL%29&_pragma=foreign_keys%281%29&_pragma=journal_mode%28WAL%29&_txlock=immediate",
			maxConns: defaultSQLConns},
		{spec: "sqlite:rel/s.db?_pragma=journal_mode(DELETE)&_txlock=deferred&prefix=x_", kind: "sqlite", driver: "sqlite",
			dsn:    "rel/s.db?_pragma=journal_mode%28DELETE%29&_pragma=busy_timeout%285000%29&_pragma=synchronous%28NORMAL%29&_pragma=foreign_keys%281%29&_txlock=deferred",
			prefix: "x_", maxConns: defaultSQLConns},
		{spec: "sqlite::memory:", kind: "sqlite", driver: "sqlite",
			dsn:      ":memory:?_pragma=busy_timeout%285000%29&_pragma=synchronous%28NORMAL%29&_pragma=foreign_keys%281%29&_txlock=immediate",
			maxConns: 1},
	}
	for _, c := range cases {
		got, err := parseSQL(c.spec)
		if err != nil {
			t.Errorf("parseSQL(%q) = %v", c.spec, err)
			continue
		}
		if got.kind != c.kind || got.driver != c.driver || got.dsn != c.dsn || got.store.TablePrefix != c.prefix ||
			got.store.CleanupInterval != c.cleanup || got.maxConns != c.maxConns {
			t.Errorf("parseSQL(%q) =\n kind %q driver %q prefix %q cleanup %v max_conns %d\n dsn %s\nwant\n kind %q driver %q prefix %q cleanup %v max_conns %d\n dsn %s",
				c.spec, got.kind, got.driver, got.store.TablePrefix, got.store.CleanupInterval, got.maxConns, got.dsn,
				c.kind, c.driver, c.prefix, c.cleanup, c.maxConns, c.dsn)
		}
	}
}

// TestParseMySQLTranslatesToTheDriverDSN checks the translation by parsing
// the result with the driver's own parser.
func TestParseMySQLTranslatesToTheDriverDSN(t *testing.T) {
	for _, c := range []struct {
		spec                   string
		user, pass, addr, db   string
		parseTime, interpolate bool
		tls                    string
	}{
		{"mysql://roam:s%3Acr%40t@127.0.0.1:3306/roam", "roam", "s:cr@t", "127.0.0.1:3306", "roam", true, true, ""},
		{"mysql://app@db.internal/sessions?prefix=s_&tls=skip-verify", "app", "", "db.internal:3306", "sessions", true, true, "skip-verify"},
		{"mysql://app:pw@[::1]:3307/x?parseTime=false&interpolateParams=false", "app", "pw", "[::1]:3307", "x", false, false, ""},
	} {
		got, err := parseSQL(c.spec)
		if err != nil {
			t.Errorf("parseSQL(%q) = %v", c.spec, err)
			continue
		}
		cfg, err := mysql.ParseDSN(got.dsn)
		if err != nil {
			t.Errorf("parseSQL(%q) made a DSN the driver rejects: %v", c.spec, err)
			continue
		}
		if cfg.User != c.user || cfg.Passwd != c.pass || cfg.Net != "tcp" || cfg.Addr != c.addr || cfg.DBName != c.db ||
			cfg.ParseTime != c.parseTime || cfg.InterpolateParams != c.interpolate || cfg.TLSConfig != c.tls {
			t.Errorf("parseSQL(%q): driver config user %q pass %q net %q addr %q db %q parseTime %v interpolateParams %v tls %q; want %q %q tcp %q %q %v %v %q",
				c.spec, cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName, cfg.ParseTime, cfg.InterpolateParams, cfg.TLSConfig,
				c.user, c.pass, c.addr, c.db, c.parseTime, c.interpolate, c.tls)
		}
		if got.store.Dialect != sqlstore.MySQL {
			t.Errorf("parseSQL(%q): dialect %q, want mysql", c.spec, got.store.Dialect)
		}
	}
}

// TestParseSQLRejectsWithoutShowingThePassword: every malformed spec is an
// error that quotes the spec, and none shows the password.
func TestParseSQLRejectsWithoutShowingThePassword(t *testing.T) {
	const secret = "hunter2"
	for _, spec := range []string{
		"postgres://u:hunter2@/db",
		"postgres://u:hunter2@h/db?cleanup=soon",
		"postgres://u:hunter2@h/db?timeout=-1s",
		"postgres://u:hunter2@h/db?max_conns=0",
		"postgres://u:hunter2@h/db?prefix=a&prefix=b",
		"postgres://u:hunter2@h:bad port/db",
		"postgres://h/db?password=hunter2&cleanup=x",
		"postgres://u:hunter2@h/db?%zz",
		"mysql://u:hunter2@h:3306/",
		"mysql://u:hunter2@h:3306/a/b",
		"mysql://:hunter2@h:3306/db",
		"mysql://u:hunter2@h:3306/db?timeout=x",
		"mysql://u:hunter2@h:3306/db?readTimeout=never",
		"sqlite:",
		"sqlite://relative.db",
		"sqlite:s.db?cleanup_batch=0",
	} {
		_, err := parseSQL(spec)
		if err == nil {
			t.Errorf("parseSQL(%q) succeeded, want an error", spec)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("parseSQL(%q) error shows the password: %v", spec, err)
		}
		if !strings.Contains(err.Error(), "store spec") {
			t.Errorf("parseSQL(%q) error %q does not say which spec", spec, err)
		}
	}
}

// TestOpenSQLiteRunsMigrate opens a SQLite file through the SPEC, as `roam
// node --store` does, and uses the store at once: the opener has created
// the schema.
func TestOpenSQLiteRunsMigrate(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sessions.db")
	for _, spec := range []string{"sqlite://" + path, "sqlite::memory:"} {
		o, err := Open(ctx, spec, Env{})
		if err != nil {
			t.Fatalf("Open(%q) = %v", spec, err)
		}
		if o.Kind != "sqlite" {
			t.Errorf("Open(%q).Kind = %q, want sqlite", spec, o.Kind)
		}
		useStore(t, o.Store)
		if err := o.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	// WAL is a property of the file, so a plain connection sees that the
	// opener's DSN parameters took effect.
	plain, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := plain.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode of the file the spec opened = %q, %v; want wal", mode, err)
	}
	plain.Close()
	// The file outlives the node: a second open finds the schema and data.
	o, err := Open(ctx, "sqlite://"+path, Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(ctx)
	if n, err := o.Store.(session.Lister).Count(ctx); err != nil || n != 1 {
		t.Errorf("reopened SQLite file: Count = %d, %v; want the 1 session kept", n, err)
	}
}

// useStore creates a session and reads it back, also from inside Range, so
// that a pool of one connection (sqlite::memory:) is seen not to deadlock.
func useStore(t *testing.T, st session.Store) {
	t.Helper()
	ctx := t.Context()
	id := session.NewID()
	now := time.Now()
	if err := st.Apply(ctx, id, session.Delta{Create: true, Set: map[string][]byte{"user": []byte("alice")},
		Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Apply(Create): %v", err)
	}
	err := st.(session.Lister).Range(ctx, func(r *session.Record) bool {
		if _, err := st.Load(ctx, r.ID); err != nil {
			t.Errorf("Load inside Range: %v", err)
		}
		return true
	})
	if err != nil {
		t.Errorf("Range: %v", err)
	}
}

// TestOpenSQLUnreachableHidesThePassword: a server that refuses the
// connection fails Open (Migrate cannot run) with an error that names the
// spec without its password.
func TestOpenSQLUnreachableHidesThePassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, spec := range []string{
		"postgres://roam:hunter2@" + addr + "/roam?sslmode=disable",
		"postgres://roam@" + addr + "/roam?sslmode=disable&password=hunter2",
		"mysql://roam:hunter2@" + addr + "/roam",
	} {
		_, err := Open(ctx, spec, Env{})
		if err == nil {
			t.Errorf("Open(%q) with nothing listening succeeded", spec)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error shows the password: %v", spec, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Open(%q) waited for the deadline instead of failing on the refused connection: %v", spec, err)
		}
	}
}

// TestOpenRealServers opens each real server through its SPEC, with the
// translation the node uses, and round-trips a session.
func TestOpenRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL and MariaDB")
	}
	t.Run("postgres", func(t *testing.T) {
		pg := testserver.Postgres(t)
		openAndUse(t, pg.DSN()+"&prefix=spec_")
	})
	t.Run("mysql", func(t *testing.T) {
		m := testserver.MariaDB(t)
		openAndUse(t, "mysql://"+m.User+":"+m.Password+"@"+m.Addr+"/"+m.Database+"?prefix=spec_&cleanup=1m")
	})
}

func openAndUse(t *testing.T, spec string) {
	ctx := t.Context()
	o, err := Open(ctx, spec, Env{})
	if err != nil {
		t.Fatalf("Open(%q) = %v", Redact(spec), err)
	}
	defer o.Close(ctx)
	if _, ok := o.Store.(*sqlstore.Store); !ok {
		t.Errorf("Open(%q).Store = %T, want a *sqlstore.Store", Redact(spec), o.Store)
	}
	useStore(t, o.Store)
}
