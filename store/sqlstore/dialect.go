package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Dialect names the SQL flavour a Store speaks. The zero value asks New to
// recognise it from the *sql.DB's driver.
type Dialect string

// The dialects roam supports, each tested against its real server with the
// driver named beside it.
const (
	// Postgres is PostgreSQL (tested: 15) through github.com/jackc/pgx/v5/stdlib
	// ("pgx").
	Postgres Dialect = "postgres"
	// MySQL is MariaDB (tested: 10.11) or MySQL (8.0 and later use the same
	// SQL; not tested here) through github.com/go-sql-driver/mysql.
	MySQL Dialect = "mysql"
	// SQLite is SQLite through modernc.org/sqlite (pure Go, no cgo; tested:
	// the SQLite built into v1.62).
	SQLite Dialect = "sqlite"
)

// detectDialect recognises the drivers roam is tested with by their
// package, without importing them: a program that uses only SQLite does not
// link pgx. A wrapped driver (tracing, metrics) is not recognised; the
// caller then sets Options.Dialect.
func detectDialect(db *sql.DB) (Dialect, error) {
	d := db.Driver()
	t := reflect.TypeOf(d)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pkg := ""
	if t != nil {
		pkg = t.PkgPath()
	}
	switch {
	case strings.HasPrefix(pkg, "github.com/jackc/pgx/"):
		return Postgres, nil
	case pkg == "github.com/go-sql-driver/mysql":
		return MySQL, nil
	case pkg == "modernc.org/sqlite":
		return SQLite, nil
	}
	return "", fmt.Errorf("sqlstore: cannot tell the dialect of driver %T: set Options.Dialect to sqlstore.Postgres, sqlstore.MySQL or sqlstore.SQLite", d)
}

// never is the stored expires of a session created without a deadline.
const never = int64(1<<63 - 1)

// attrChunk is how many attributes one INSERT or DELETE names at most: a
// bound on the statement's parameters far under every dialect's limit
// (SQLite's is 999 in old builds).
const attrChunk = 100

// rangePage is how many sessions Range reads per query. Range holds no
// connection while its fn runs, so fn may use the store even when the pool
// has a single connection (SQLite :memory:).
const rangePage = 100

// Update masks: which session columns a statement sets besides version.
const (
	setPrincipal = 1 << iota
	setTouched
	setExpires
	maskCount = 1 << iota
)

// queries holds every fixed statement of a Store, with its table names and
// placeholders filled in once at New.
type queries struct {
	dialect Dialect
	attrs   string // attributes table name

	schema []string

	load        string
	loadExpires string // non-locking look at a session before a Create
	update      [maskCount]string
	create      [maskCount]string
	dropExpired string
	delete      string
	find        string
	delByPrinc  string
	count       string
	rangePage   string
	cleanup     string

	// MySQL deletes many sessions in two steps, a plain read of the ids and
	// a DELETE by primary key; see Store.deleteLocked.
	expiredIDs string
	delIDsHead string

	upsertHead, upsertTail string // around the VALUES rows of an attribute upsert
	delAttrHead            string // before the IN list of an attribute delete
}

// placeholder returns the n-th (1-based) bind parameter of the dialect.
func (q *queries) placeholder(n int) string {
	if q.dialect == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// bind rewrites the ? placeholders of a statement written for MySQL and
// SQLite into PostgreSQL's $1, $2, …. The statements are our own and hold
// no ? inside literals.
func (q *queries) bind(s string) string {
	if q.dialect != Postgres {
		return s
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// newQueries builds the statements of dialect d for tables named with prefix.
func newQueries(d Dialect, prefix string) *queries {
	sess, attrs := prefix+"sessions", prefix+"attributes"
	q := &queries{dialect: d, attrs: attrs}
	q.schema = schema(d, prefix, sess, attrs)

	q.load = q.bind("SELECT s.principal, s.created, s.touched, s.expires, a.name, a.value FROM " + sess +
		" s LEFT JOIN " + attrs + " a ON a.session_id = s.id WHERE s.id = ? AND s.expires > ?")
	q.loadExpires = q.bind("SELECT expires FROM " + sess + " WHERE id = ?")
	for m := range maskCount {
		set := "version = version + 1"
		var ins []string // ON CONFLICT / ON DUPLICATE KEY assignments
		excluded := "EXCLUDED."
		if d == SQLite {
			excluded = "excluded."
		}
		for _, c := range []struct {
			bit  int
			name string
		}{{setPrincipal, "principal"}, {setTouched, "touched"}, {setExpires, "expires"}} {
			if m&c.bit == 0 {
				continue
			}
			set += ", " + c.name + " = ?"
			if d == MySQL {
				ins = append(ins, c.name+" = VALUES("+c.name+")")
			} else {
				ins = append(ins, c.name+" = "+excluded+c.name)
			}
		}
		q.update[m] = q.bind("UPDATE " + sess + " SET " + set + " WHERE id = ? AND expires > ?")
		head := "INSERT INTO " + sess + " (id, principal, created, touched, expires, version) VALUES (?, ?, ?, ?, ?, 1)"
		bump := "version = " + sess + ".version + 1"
		if d != Postgres {
			bump = "version = version + 1"
		}
		tail := strings.Join(append([]string{bump}, ins...), ", ")
		if d == MySQL {
			q.create[m] = head + " ON DUPLICATE KEY UPDATE " + tail
		} else {
			q.create[m] = q.bind(head + " ON CONFLICT (id) DO UPDATE SET " + tail)
		}
	}
	q.dropExpired = q.bind("DELETE FROM " + sess + " WHERE id = ? AND expires <= ?")
	q.delete = q.bind("DELETE FROM " + sess + " WHERE id = ?")
	q.find = q.bind("SELECT id FROM " + sess + " WHERE principal = ? AND expires > ?")
	q.delByPrinc = q.bind("DELETE FROM " + sess + " WHERE principal = ? AND expires > ?")
	q.count = q.bind("SELECT COUNT(*) FROM " + sess + " WHERE expires > ?")
	q.rangePage = q.bind("SELECT s.id, s.principal, s.created, s.touched, s.expires, a.name, a.value FROM (SELECT id, principal, created, touched, expires FROM " +
		sess + " WHERE id > ? AND expires > ? ORDER BY id LIMIT " + strconv.Itoa(rangePage) + ") s LEFT JOIN " +
		attrs + " a ON a.session_id = s.id ORDER BY s.id")
	switch d {
	case Postgres:
		// SKIP LOCKED: several app instances cleaning at once each take rows
		// the others are not deleting, instead of queueing behind them.
		q.cleanup = "DELETE FROM " + sess + " WHERE id IN (SELECT id FROM " + sess +
			" WHERE expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)"
	case MySQL:
		q.expiredIDs = "SELECT id FROM " + sess + " WHERE expires <= ? ORDER BY expires LIMIT ?"
		q.delIDsHead = "DELETE FROM " + sess + " WHERE id IN ("
	case SQLite:
		// DELETE … LIMIT needs a compile-time option SQLite builds lack.
		q.cleanup = "DELETE FROM " + sess + " WHERE id IN (SELECT id FROM " + sess +
			" WHERE expires <= ? ORDER BY expires LIMIT ?)"
	}

	q.upsertHead = "INSERT INTO " + attrs + " (session_id, name, value) VALUES "
	switch d {
	case Postgres:
		q.upsertTail = " ON CONFLICT (session_id, name) DO UPDATE SET value = EXCLUDED.value"
	case MySQL:
		// VALUES() is deprecated in MySQL 8.0.20 in favour of a row alias,
		// which MariaDB does not have; it still works in both.
		q.upsertTail = " ON DUPLICATE KEY UPDATE value = VALUES(value)"
	case SQLite:
		q.upsertTail = " ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value"
	}
	q.delAttrHead = "DELETE FROM " + attrs + " WHERE session_id = "
	return q
}

// upsertAttrs returns the statement that writes n attributes of one session.
func (q *queries) upsertAttrs(n int) string {
	var b strings.Builder
	b.Grow(len(q.upsertHead) + len(q.upsertTail) + n*16)
	b.WriteString(q.upsertHead)
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + q.placeholder(p+1) + ", " + q.placeholder(p+2) + ", " + q.placeholder(p+3) + ")")
		p += 3
	}
	b.WriteString(q.upsertTail)
	return b.String()
}

// deleteIDs returns the MySQL statement that deletes n sessions by id
// that still meet cond (whose placeholders follow the ids).
func (q *queries) deleteIDs(n int, cond string) string {
	var b strings.Builder
	b.WriteString(q.delIDsHead)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?")
	}
	b.WriteString(") AND " + cond)
	return b.String()
}

// deleteAttrs returns the statement that deletes n attributes of one session.
func (q *queries) deleteAttrs(n int) string {
	var b strings.Builder
	b.WriteString(q.delAttrHead + q.placeholder(1) + " AND name IN (")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q.placeholder(i + 2))
	}
	b.WriteString(")")
	return b.String()
}

// schema returns the statements that create the tables and indexes when they
// are missing. Every statement is idempotent.
//
// Times are BIGINT microseconds since the Unix epoch in every dialect: exact,
// free of time zones, and readable whatever the driver's time settings (a
// MySQL DSN without parseTime, SQLite, which has no time type).
//
// On MySQL every string column is VARBINARY: ids, principals and attribute
// names compare byte for byte. utf8mb4_bin would keep case and accents apart
// too, but it is a PAD SPACE collation, so "a" and "a " would be one key (and
// DeleteByPrincipal("alice ") would log alice out).
func schema(d Dialect, prefix, sess, attrs string) []string {
	switch d {
	case Postgres:
		// COLLATE "C": byte order, so comparisons and the primary key do not
		// depend on the database's locale.
		return []string{
			"CREATE TABLE IF NOT EXISTS " + sess + ` (
	id        TEXT COLLATE "C" PRIMARY KEY,
	principal TEXT COLLATE "C",
	created   BIGINT NOT NULL,
	touched   BIGINT NOT NULL,
	expires   BIGINT NOT NULL,
	version   BIGINT NOT NULL DEFAULT 1
)`,
			"CREATE INDEX IF NOT EXISTS " + prefix + "sessions_expires ON " + sess + " (expires)",
			"CREATE INDEX IF NOT EXISTS " + prefix + "sessions_principal ON " + sess + " (principal) WHERE principal IS NOT NULL",
			"CREATE TABLE IF NOT EXISTS " + attrs + ` (
	session_id TEXT COLLATE "C" NOT NULL REFERENCES ` + sess + ` (id) ON DELETE CASCADE,
	name       TEXT COLLATE "C" NOT NULL,
	value      BYTEA NOT NULL,
	PRIMARY KEY (session_id, name)
)`,
		}
	case MySQL:
		// MySQL has no CREATE INDEX IF NOT EXISTS, so indexes are declared
		// inside the tables.
		return []string{
			"CREATE TABLE IF NOT EXISTS " + sess + ` (
	id        VARBINARY(255) NOT NULL,
	principal VARBINARY(1024) NULL,
	created   BIGINT NOT NULL,
	touched   BIGINT NOT NULL,
	expires   BIGINT NOT NULL,
	version   BIGINT NOT NULL DEFAULT 1,
	PRIMARY KEY (id),
	KEY ` + prefix + `sessions_expires (expires),
	KEY ` + prefix + `sessions_principal (principal)
) ENGINE=InnoDB`,
			"CREATE TABLE IF NOT EXISTS " + attrs + ` (
	session_id VARBINARY(255) NOT NULL,
	name       VARBINARY(1024) NOT NULL,
	value      LONGBLOB NOT NULL,
	PRIMARY KEY (session_id, name),
	CONSTRAINT ` + prefix + `attributes_session FOREIGN KEY (session_id) REFERENCES ` + sess + ` (id) ON DELETE CASCADE
) ENGINE=InnoDB`,
		}
	case SQLite:
		// Foreign keys are enforced only on connections that turned them on
		// (PRAGMA foreign_keys), which a caller's *sql.DB may not do; the
		// trigger removes a session's attributes whatever the pragma says.
		return []string{
			"CREATE TABLE IF NOT EXISTS " + sess + ` (
	id        TEXT NOT NULL PRIMARY KEY,
	principal TEXT,
	created   INTEGER NOT NULL,
	touched   INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	version   INTEGER NOT NULL DEFAULT 1
)`,
			"CREATE INDEX IF NOT EXISTS " + prefix + "sessions_expires ON " + sess + " (expires)",
			"CREATE INDEX IF NOT EXISTS " + prefix + "sessions_principal ON " + sess + " (principal) WHERE principal IS NOT NULL",
			"CREATE TABLE IF NOT EXISTS " + attrs + ` (
	session_id TEXT NOT NULL REFERENCES ` + sess + ` (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	value      BLOB NOT NULL,
	PRIMARY KEY (session_id, name)
)`,
			"CREATE TRIGGER IF NOT EXISTS " + prefix + "sessions_delete AFTER DELETE ON " + sess +
				" BEGIN DELETE FROM " + attrs + " WHERE session_id = OLD.id; END",
		}
	}
	return nil
}

// retryable reports whether err aborted a transaction that may simply be run
// again: a deadlock or serialization failure the server resolved by rolling
// one transaction back, or SQLite's lock still held by another process after
// busy_timeout.
func retryable(d Dialect, err error) bool {
	switch d {
	case Postgres:
		// pgconn.PgError, found by its method so that this package does
		// not import pgx.
		var pe interface{ SQLState() string }
		if errors.As(err, &pe) {
			switch pe.SQLState() {
			case "40001", "40P01": // serialization_failure, deadlock_detected
				return true
			}
		}
	case MySQL:
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			switch me.Number {
			case 1213, // ER_LOCK_DEADLOCK
				1020: // ER_CHECKREAD: MariaDB's snapshot isolation conflict
				return true
			}
		}
	case SQLite:
		var se interface{ Code() int }
		if errors.As(err, &se) {
			switch se.Code() & 0xff {
			case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
				return true
			}
		}
	}
	return false
}
