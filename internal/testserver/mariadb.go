package testserver

import (
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
)

// MariaDBOptions configures MariaDB. The zero value is ready to use.
type MariaDBOptions struct {
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// Args are extra mariadbd flags, after the harness's own (so they win),
	// such as "--max-connections=20".
	Args []string
}

// MariaDBServer is a running MariaDB owned by one test, or a database of its
// own on the shared server (SharedMariaDB). Its methods fail the test on
// error and must be called from the test's goroutine.
type MariaDBServer struct {
	Addr     string // host:port
	Host     string
	Port     int
	User     string // has every privilege, from any host
	Password string
	Database string
	Dir      string // holds data/, the unix socket and tmp/
	Socket   string // unix socket path; root connects there without a password

	shared bool
	srv    *servers.MariaDB
	h      handle
}

// MariaDB runs mariadb-install-db into a fresh temporary directory, starts
// mariadbd on a free port, creates the database "roam" and a user
// roam/roam with every privilege, and returns once it accepts queries; it
// is stopped when the test ends. It takes about a second: tests of one
// package should share one server through SharedMariaDB. It skips the test
// (fails it under CI) when MariaDB is not installed.
func MariaDB(t testing.TB, opts ...MariaDBOptions) *MariaDBServer {
	t.Helper()
	o := oneOption(t, opts)
	daemon, installer := requireMariaDB(t)
	s, err := startMariaDB(t, daemon, installer, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.h.t = t
	return s
}

// requireMariaDB finds the server and its installer under either name.
func requireMariaDB(t testing.TB) (daemon, installer string) {
	t.Helper()
	if _, err := lookBinary("mariadbd"); err == nil {
		daemon = Require(t, "mariadbd", "mariadb-server")
	} else {
		daemon = Require(t, "mysqld", "mariadb-server")
	}
	if _, err := lookBinary("mariadb-install-db"); err == nil {
		installer = Require(t, "mariadb-install-db", "mariadb-server")
	} else {
		installer = Require(t, "mysql_install_db", "mariadb-server")
	}
	return daemon, installer
}

func startMariaDB(c cleaner, daemon, installer string, o MariaDBOptions) (*MariaDBServer, error) {
	srv, err := servers.StartMariaDB(c, servers.MariaDBOptions{Daemon: daemon, Installer: installer, Host: o.Host, Args: o.Args})
	if err != nil {
		return nil, err
	}
	return &MariaDBServer{Addr: srv.Addr, Host: srv.Host, Port: srv.Port, User: srv.User, Password: srv.Password,
		Database: srv.Database, Dir: srv.Dir, Socket: srv.Socket, srv: srv, h: handle{addr: srv.Addr, in: srv.Instance}}, nil
}

// DSN returns the database's DSN in go-sql-driver/mysql form:
// roam:roam@tcp(127.0.0.1:PORT)/DB?parseTime=true.
func (s *MariaDBServer) DSN() string {
	db := *s.srv
	db.Database = s.Database // a shared server's view names the test's own database
	return db.DSN()
}

// Kill sends SIGKILL to mariadbd: a crash. Committed transactions survive:
// InnoDB recovers them at the next start.
func (s *MariaDBServer) Kill() {
	s.h.t.Helper()
	s.notShared("Kill")
	s.h.kill()
}

// Stop shuts mariadbd down cleanly with SIGTERM.
func (s *MariaDBServer) Stop() {
	s.h.t.Helper()
	s.notShared("Stop")
	s.h.stop()
}

// Restart stops mariadbd if it is running and starts it again on the same
// port and data directory, waiting until it accepts queries.
func (s *MariaDBServer) Restart() {
	s.h.t.Helper()
	s.notShared("Restart")
	s.h.restart()
}

// Running reports whether the mariadbd process is alive.
func (s *MariaDBServer) Running() bool { return s.h.running() }

// Proc returns the current mariadbd process, for Freeze and Thaw.
func (s *MariaDBServer) Proc() *proc.Process { return s.h.proc() }

func (s *MariaDBServer) notShared(what string) {
	s.h.t.Helper()
	if s.shared {
		s.h.t.Fatalf("testserver: %s on a shared MariaDB would break the other tests; use testserver.MariaDB(t) for a server of the test's own", what)
	}
}

// exec runs statements as root over the unix socket.
func (s *MariaDBServer) exec(stmts ...string) error { return s.srv.Exec(stmts...) }
