package testserver

import (
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
)

// PostgresOptions configures Postgres. The zero value is ready to use.
type PostgresOptions struct {
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// Settings are extra server settings as "name=value", passed as -c
	// flags after the harness's own (so they win).
	Settings []string
}

// PostgresServer is a running PostgreSQL owned by one test, or a database of
// its own on the shared server (SharedPostgres). Its methods fail the test
// on error and must be called from the test's goroutine.
type PostgresServer struct {
	Addr     string // host:port
	Host     string
	Port     int
	User     string // a superuser; trust authentication, no password
	Database string
	Dir      string // holds data/ and the unix socket

	shared bool
	srv    *servers.Postgres
	h      handle
}

// Postgres runs initdb into a fresh temporary directory, starts postgres on
// a free port (with its unix socket in that directory too), creates the
// database "roam" and returns once it accepts queries; it is stopped when the
// test ends. It takes about a second, mostly initdb: tests of one package
// should share one server through SharedPostgres.
//
// initdb and postgres refuse to run as root; when the tests do, they run as
// the system user roamtest, which is created if missing (nobody if that
// fails). It skips the test (fails it under CI) when PostgreSQL is not
// installed.
func Postgres(t testing.TB, opts ...PostgresOptions) *PostgresServer {
	t.Helper()
	o := oneOption(t, opts)
	binDir := postgresBinDir(t)
	s, err := startPostgres(t, binDir, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.h.t = t
	return s
}

func startPostgres(c cleaner, binDir string, o PostgresOptions) (*PostgresServer, error) {
	srv, err := servers.StartPostgres(c, servers.PostgresOptions{BinDir: binDir, Host: o.Host, Settings: o.Settings})
	if err != nil {
		return nil, err
	}
	return &PostgresServer{Addr: srv.Addr, Host: srv.Host, Port: srv.Port, User: srv.User, Database: srv.Database,
		Dir: srv.Dir, srv: srv, h: handle{addr: srv.Addr, in: srv.Instance}}, nil
}

// DSN returns the database's URL in the form pgx and lib/pq accept:
// postgres://roam@127.0.0.1:PORT/DB?sslmode=disable.
func (s *PostgresServer) DSN() string {
	db := *s.srv
	db.Database = s.Database // a shared server's view names the test's own database
	return db.DSN()
}

// Kill sends SIGKILL to postgres and its backends: a crash. Committed data
// survives: recovery replays the WAL at the next start.
func (s *PostgresServer) Kill() {
	s.h.t.Helper()
	s.notShared("Kill")
	s.h.kill()
}

// Stop shuts postgres down (fast shutdown: clients are disconnected).
func (s *PostgresServer) Stop() {
	s.h.t.Helper()
	s.notShared("Stop")
	s.h.stop()
}

// Restart stops postgres if it is running and starts it again on the same
// port and data directory, waiting until it accepts queries.
func (s *PostgresServer) Restart() {
	s.h.t.Helper()
	s.notShared("Restart")
	s.h.restart()
}

// Running reports whether the postgres process is alive.
func (s *PostgresServer) Running() bool { return s.h.running() }

// Proc returns the current postmaster process, for Freeze and Thaw (which
// reach its backends too).
func (s *PostgresServer) Proc() *proc.Process { return s.h.proc() }

func (s *PostgresServer) notShared(what string) {
	s.h.t.Helper()
	if s.shared {
		s.h.t.Fatalf("testserver: %s on a shared PostgreSQL would break the other tests; use testserver.Postgres(t) for a server of the test's own", what)
	}
}

// exec runs one statement as the superuser in the maintenance database.
func (s *PostgresServer) exec(sql string) error { return s.srv.Exec(sql) }
