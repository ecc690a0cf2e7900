package testserver

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/roamsession/roam/internal/proc"
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
	t      testing.TB
	in     *instance
}

// mariadbFlags make startup and tests fast: small buffers and logs, no
// doublewrite, the redo log written at each commit but never fsync'd (so a
// killed server keeps every commit; only a machine crash would lose them),
// no performance schema, and synchronous I/O (native AIO is unavailable in
// many containers).
var mariadbFlags = []string{
	"--skip-name-resolve",
	"--innodb-buffer-pool-size=16M",
	"--innodb-log-file-size=8M",
	"--innodb-flush-log-at-trx-commit=2",
	"--innodb-doublewrite=0",
	"--innodb-use-native-aio=0",
	"--performance-schema=OFF",
	"--skip-log-bin",
	"--character-set-server=utf8mb4",
	"--max-connections=200",
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
	s.t = t
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
	host := loopbackHost(o.Host)
	dir, err := tempDir(c, "mdb")
	if err != nil {
		return nil, err
	}
	data, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	sock := filepath.Join(dir, "mysqld.sock")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	// mariadbd refuses root unless --user names it; naming the current
	// user is harmless otherwise, so it is always given as root.
	var asUser []string
	if os.Geteuid() == 0 {
		name := "root"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		asUser = []string{"--user=" + name}
	}
	// --no-defaults must come first: it keeps /etc/mysql/my.cnf (system
	// socket and datadir) out of the test server.
	install := append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M"}, asUser...)
	if err := runTool(proc.Spec{Name: filepath.Base(installer), Path: installer, Args: install, Dir: dir}); err != nil {
		return nil, err
	}

	rootDSN := mariadbRootDSN(sock)
	var s *MariaDBServer
	err = withPortRetry(func() error {
		port, err := proc.FreePort(host)
		if err != nil {
			return err
		}
		args := []string{"--no-defaults", "--datadir=" + data, "--socket=" + sock, "--tmpdir=" + tmp,
			"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
			"--bind-address=" + host, "--port=" + strconv.Itoa(port)}
		args = append(args, mariadbFlags...)
		args = append(args, asUser...)
		args = append(args, o.Args...)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		in := &instance{
			name:         "mariadb " + addr,
			spec:         proc.Spec{Name: "mariadbd", Path: daemon, Args: args, Dir: dir},
			ready:        func(ctx context.Context) error { return sqlPing(ctx, rootDSN) },
			startTimeout: slowStartTimeout,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &MariaDBServer{Addr: addr, Host: host, Port: port, User: "roam", Password: "roam",
			Database: "roam", Dir: dir, Socket: sock, in: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.in.register(c)
	if err := s.exec(
		"CREATE DATABASE `roam`",
		"CREATE USER 'roam'@'%' IDENTIFIED BY 'roam'",
		"GRANT ALL PRIVILEGES ON *.* TO 'roam'@'%' WITH GRANT OPTION",
	); err != nil {
		return nil, err
	}
	return s, nil
}

// DSN returns the database's DSN in go-sql-driver/mysql form:
// roam:roam@tcp(127.0.0.1:PORT)/DB?parseTime=true.
func (s *MariaDBServer) DSN() string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = s.User, s.Password
	cfg.Net, cfg.Addr = "tcp", s.Addr
	cfg.DBName = s.Database
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// Kill sends SIGKILL to mariadbd: a crash. Committed transactions survive:
// InnoDB recovers them at the next start.
func (s *MariaDBServer) Kill() {
	s.t.Helper()
	s.notShared("Kill")
	if err := s.in.kill(); err != nil {
		s.t.Fatalf("testserver: kill %s: %v", s.Addr, err)
	}
}

// Stop shuts mariadbd down cleanly with SIGTERM.
func (s *MariaDBServer) Stop() {
	s.t.Helper()
	s.notShared("Stop")
	if err := s.in.stop(); err != nil {
		s.t.Fatalf("testserver: stop %s: %v", s.Addr, err)
	}
}

// Restart stops mariadbd if it is running and starts it again on the same
// port and data directory, waiting until it accepts queries.
func (s *MariaDBServer) Restart() {
	s.t.Helper()
	s.notShared("Restart")
	if err := s.in.restart(); err != nil {
		s.t.Fatalf("testserver: restart %s: %v", s.Addr, err)
	}
}

// Running reports whether the mariadbd process is alive.
func (s *MariaDBServer) Running() bool { return s.in.running() }

// Proc returns the current mariadbd process, for Freeze and Thaw.
func (s *MariaDBServer) Proc() *proc.Process { return s.in.current() }

func (s *MariaDBServer) notShared(what string) {
	s.t.Helper()
	if s.shared {
		s.t.Fatalf("testserver: %s on a shared MariaDB would break the other tests; use testserver.MariaDB(t) for a server of the test's own", what)
	}
}

// exec runs statements as root over the unix socket.
func (s *MariaDBServer) exec(stmts ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", mariadbRootDSN(s.Socket))
	if err != nil {
		return fmt.Errorf("testserver: mariadb %s: %w", s.Addr, err)
	}
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("testserver: mariadb %s: %s: %w", s.Addr, stmt, err)
		}
	}
	return nil
}

// mariadbRootDSN is root over the unix socket, which needs no password
// (mariadb-install-db --auth-root-authentication-method=normal).
func mariadbRootDSN(sock string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", sock
	cfg.Timeout = 2 * time.Second
	return cfg.FormatDSN()
}

func sqlPing(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}
