package storespec

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver

	"github.com/roamsession/roam/store/sqlstore"
)

// sqlConfig is a parsed postgres://, mysql:// or sqlite: spec.
type sqlConfig struct {
	kind     string // "postgres", "mysql" or "sqlite": Opened.Kind
	driver   string // database/sql driver name
	dsn      string // the driver's DSN; may hold a password: never print it
	memory   bool   // sqlite::memory:, which lives in one connection
	maxConns int
	store    sqlstore.Options
}

// defaultSQLConns bounds a node's pool: a burst of requests queues for a
// connection instead of opening hundreds (and running the server out of
// max_connections), and idle connections are kept rather than churned.
const defaultSQLConns = 16

// parseSQL parses
//
//	postgres://user[:pass]@host[:port]/db[?sslmode=…&…]   (also postgresql://; any pgx URL)
//	mysql://user[:pass]@host[:port]/db[?tls=…&…]          (any go-sql-driver/mysql parameter)
//	sqlite:///abs/path.db   sqlite:relative/path.db   sqlite::memory:
//
// each optionally followed by roam's own parameters, which are removed
// before the rest goes to the driver: prefix (table prefix), cleanup
// (interval, a duration; "off" disables the loop), cleanup_batch, timeout
// (per call) and max_conns (pool size, default 16). Errors quote the spec
// with its password redacted, never the driver's DSN.
func parseSQL(spec string) (*sqlConfig, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("store spec %q: "+format, append([]any{redactSQL(spec)}, args...)...)
	}
	kind, rest, _ := strings.Cut(spec, ":")
	c := &sqlConfig{kind: kind, maxConns: defaultSQLConns}
	var query string
	switch kind {
	case "postgres", "postgresql":
		c.kind, c.driver, c.store.Dialect = "postgres", "pgx", sqlstore.Postgres
	case "mysql":
		c.driver, c.store.Dialect = "mysql", sqlstore.MySQL
	case "sqlite":
		c.driver, c.store.Dialect = "sqlite", sqlstore.SQLite
		rest, query, _ = strings.Cut(rest, "?")
	default:
		return nil, fail("not a SQL spec")
	}

	var u *url.URL
	if kind != "sqlite" {
		var err error
		if u, err = url.Parse(spec); err != nil {
			// url.Error quotes the whole URL, password included.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fail("not a URL: %v", err)
		}
		if u.Host == "" {
			return nil, fail("want %s://user@host:port/database", kind)
		}
		query = u.RawQuery
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fail("bad query: %v", err)
	}
	if err := c.takeRoamParams(q); err != nil {
		return nil, fail("%v", err)
	}

	switch c.kind {
	case "postgres":
		u.RawQuery = q.Encode()
		c.dsn = u.String()
	case "mysql":
		c.dsn, err = mysqlDSN(u, q)
		if err != nil {
			return nil, fail("%v", err)
		}
	case "sqlite":
		path, err := sqlitePath(rest)
		if err != nil {
			return nil, fail("%v", err)
		}
		c.memory = path == ":memory:"
		c.dsn = path + "?" + sqliteParams(q, c.memory)
		if c.memory {
			c.maxConns = 1 // every connection to :memory: is a database of its own
		}
	}
	return c, nil
}

// takeRoamParams moves roam's own parameters from q into c.
func (c *sqlConfig) takeRoamParams(q url.Values) error {
	for _, key := range []string{"prefix", "cleanup", "cleanup_batch", "timeout", "max_conns"} {
		vals, ok := q[key]
		if !ok {
			continue
		}
		delete(q, key)
		if len(vals) != 1 {
			return fmt.Errorf("%s given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "prefix":
			if v == "" {
				return errors.New("prefix is empty")
			}
			c.store.TablePrefix = v // sqlstore.New checks its form
		case "cleanup":
			if v == "off" {
				c.store.CleanupInterval = -1
				break
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("cleanup %q: want a positive duration such as 5m, or off", v)
			}
			c.store.CleanupInterval = d
		case "cleanup_batch":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("cleanup_batch %q: want a positive integer", v)
			}
			c.store.CleanupBatch = n
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("timeout %q: want a positive duration such as 2s", v)
			}
			c.store.Timeout = d
		case "max_conns":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("max_conns %q: want a positive integer", v)
			}
			c.maxConns = n
		}
	}
	return nil
}

// mysqlDSN translates mysql://user:pass@host:port/db?params into
// go-sql-driver/mysql's user:pass@tcp(host:port)/db?params. Unless the spec
// says otherwise it turns on parseTime and interpolateParams (a statement
// is then one round trip instead of prepare, execute and close; the
// driver refuses it for the few character sets where it would be unsafe).
func mysqlDSN(u *url.URL, q url.Values) (string, error) {
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return "", errors.New("want mysql://user:pass@host:port/database")
	}
	if u.User == nil || u.User.Username() == "" {
		return "", errors.New("want a user: mysql://user:pass@host:port/database")
	}
	for _, key := range []string{"parseTime", "interpolateParams"} {
		if !q.Has(key) {
			q.Set(key, "true")
		}
	}
	// The driver's own parser checks every parameter; only the address
	// part is ours to build.
	cfg, err := mysql.ParseDSN("/?" + q.Encode())
	if err != nil {
		return "", fmt.Errorf("bad parameter: %v", err)
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = db
	return cfg.FormatDSN(), nil
}

// sqlitePath returns the file of a sqlite: spec: sqlite:///abs/path,
// sqlite:rel/path or sqlite::memory:.
func sqlitePath(rest string) (string, error) {
	if p, ok := strings.CutPrefix(rest, "//"); ok {
		if !strings.HasPrefix(p, "/") {
			return "", errors.New("sqlite:// takes an absolute path (sqlite:///var/lib/roam/sessions.db); write sqlite:relative.db for a relative one")
		}
		rest = p
	}
	if rest == "" {
		return "", errors.New("want sqlite:///abs/path.db, sqlite:relative.db or sqlite::memory:")
	}
	return rest, nil
}

var pragmaName = regexp.MustCompile(`^\s*([A-Za-z_]+)`)

// sqliteParams returns the modernc.org/sqlite DSN parameters: the spec's
// own, plus these unless the spec sets them: busy_timeout(5000), so a
// writer of another process is waited for rather than failed at once;
// journal_mode(WAL) for a file, so readers never wait for the writer;
// synchronous(NORMAL), which WAL keeps durable at every checkpoint;
// foreign_keys(1); and _txlock=immediate, so a transaction takes the write
// lock when it begins rather than failing to upgrade later.
func sqliteParams(q url.Values, memory bool) string {
	given := map[string]bool{}
	for _, p := range q["_pragma"] {
		if m := pragmaName.FindStringSubmatch(p); m != nil {
			given[strings.ToLower(m[1])] = true
		}
	}
	defaults := []string{"busy_timeout(5000)", "synchronous(NORMAL)", "foreign_keys(1)"}
	if !memory {
		defaults = append(defaults, "journal_mode(WAL)")
	}
	for _, d := range defaults {
		if name, _, _ := strings.Cut(d, "("); !given[name] {
			q.Add("_pragma", d)
		}
	}
	if !q.Has("_txlock") {
		q.Set("_txlock", "immediate")
	}
	return q.Encode()
}

var queryPassword = regexp.MustCompile(`(?i)([?&]password=)[^&]*`)

// redactSQL is Redact, and also hides a password given as a query
// parameter (postgres://host/db?password=…).
func redactSQL(spec string) string {
	return queryPassword.ReplaceAllString(Redact(spec), "${1}xxxxx")
}

// openSQL opens a postgres://, mysql:// or sqlite: spec: the database, its
// pool, and a sqlstore.Store on it, after running Migrate. The opener owns
// the *sql.DB, so Opened.Close closes the store and then the database.
func openSQL(ctx context.Context, spec string, env Env) (*Opened, error) {
	c, err := parseSQL(spec)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(c.driver, c.dsn)
	if err != nil {
		return nil, fmt.Errorf("store spec %q: %w", redactSQL(spec), err)
	}
	db.SetMaxOpenConns(c.maxConns)
	db.SetMaxIdleConns(c.maxConns)
	if c.memory {
		// The database is the connection: never let the pool retire it.
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	c.store.Logger = env.Logger
	st, err := sqlstore.New(db, c.store)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store spec %q: %w", redactSQL(spec), err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		db.Close()
		return nil, fmt.Errorf("store spec %q: %w", redactSQL(spec), err)
	}
	return &Opened{
		Store: st,
		Kind:  c.kind,
		Close: func(context.Context) error {
			st.Close()
			return db.Close()
		},
	}, nil
}
