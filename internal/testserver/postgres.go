package testserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roamsession/roam/internal/proc"
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
	t      testing.TB
	in     *instance
}

// postgresSettings make startup and tests fast: no fsync (the data
// directory is thrown away, and a killed process's writes still reach the
// page cache, so Kill loses nothing committed: synchronous_commit stays on
// for that), little memory, no background work, dynamic shared memory in
// the data directory rather than /dev/shm (nothing is left behind by a
// Kill).
var postgresSettings = []string{
	"fsync=off",
	"full_page_writes=off",
	"shared_buffers=16MB",
	"max_connections=60",
	"dynamic_shared_memory_type=mmap",
	"autovacuum=off",
	"wal_level=minimal",
	"max_wal_senders=0",
	"logging_collector=off",
	"log_min_messages=warning",
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
	s.t = t
	return s
}

func startPostgres(c cleaner, binDir string, o PostgresOptions) (*PostgresServer, error) {
	host := loopbackHost(o.Host)
	cred, err := runAsUnprivileged()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir(c, "pg")
	if err != nil {
		return nil, err
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	if err := chownTree(dir, cred); err != nil {
		return nil, fmt.Errorf("testserver: give %s to the postgres user: %w", dir, err)
	}
	if err := runTool(proc.Spec{
		Name: "initdb",
		Path: filepath.Join(binDir, "initdb"),
		Args: []string{"-D", data, "-U", "roam", "--auth=trust", "--no-sync", "--no-instructions",
			"--locale=C", "--encoding=UTF8"},
		Dir:        dir,
		Credential: cred,
	}); err != nil {
		return nil, err
	}

	var s *PostgresServer
	err = withPortRetry(func() error {
		port, err := proc.FreePort(host)
		if err != nil {
			return err
		}
		args := []string{"-D", data, "-k", sock, "-h", host, "-p", strconv.Itoa(port)}
		for _, kv := range append(append([]string(nil), postgresSettings...), o.Settings...) {
			args = append(args, "-c", kv)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		admin := postgresDSN("roam", addr, "postgres")
		in := &instance{
			name: "postgres " + addr,
			spec: proc.Spec{
				Name:       "postgres",
				Path:       filepath.Join(binDir, "postgres"),
				Args:       args,
				Dir:        dir,
				StopSignal: syscall.SIGINT, // fast shutdown: SIGTERM would wait for every client to leave
				Credential: cred,
			},
			ready:        func(ctx context.Context) error { return postgresPing(ctx, admin) },
			startTimeout: slowStartTimeout,
			// A stop rather than a kill at cleanup: postgres removes its
			// System V shared memory segment only when it shuts down.
			gracefulCleanup: true,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &PostgresServer{Addr: addr, Host: host, Port: port, User: "roam", Database: "roam", Dir: dir, in: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.in.register(c)
	if err := s.exec(`CREATE DATABASE "roam"`); err != nil {
		return nil, err
	}
	return s, nil
}

// DSN returns the database's URL in the form pgx and lib/pq accept:
// postgres://roam@127.0.0.1:PORT/DB?sslmode=disable.
func (s *PostgresServer) DSN() string { return postgresDSN(s.User, s.Addr, s.Database) }

func postgresDSN(user, addr, db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Kill sends SIGKILL to postgres and its backends: a crash. Committed data
// survives: recovery replays the WAL at the next start.
func (s *PostgresServer) Kill() {
	s.t.Helper()
	s.notShared("Kill")
	if err := s.in.kill(); err != nil {
		s.t.Fatalf("testserver: kill %s: %v", s.Addr, err)
	}
}

// Stop shuts postgres down (fast shutdown: clients are disconnected).
func (s *PostgresServer) Stop() {
	s.t.Helper()
	s.notShared("Stop")
	if err := s.in.stop(); err != nil {
		s.t.Fatalf("testserver: stop %s: %v", s.Addr, err)
	}
}

// Restart stops postgres if it is running and starts it again on the same
// port and data directory, waiting until it accepts queries.
func (s *PostgresServer) Restart() {
	s.t.Helper()
	s.notShared("Restart")
	if err := s.in.restart(); err != nil {
		s.t.Fatalf("testserver: restart %s: %v", s.Addr, err)
	}
}

// Running reports whether the postgres process is alive.
func (s *PostgresServer) Running() bool { return s.in.running() }

// Proc returns the current postmaster process, for Freeze and Thaw (which
// reach its backends too).
func (s *PostgresServer) Proc() *proc.Process { return s.in.current() }

func (s *PostgresServer) notShared(what string) {
	s.t.Helper()
	if s.shared {
		s.t.Fatalf("testserver: %s on a shared PostgreSQL would break the other tests; use testserver.Postgres(t) for a server of the test's own", what)
	}
}

// exec runs one statement as the superuser in the maintenance database.
func (s *PostgresServer) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresDSN(s.User, s.Addr, "postgres"))
	if err != nil {
		return fmt.Errorf("testserver: postgres %s: %w", s.Addr, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("testserver: postgres %s: %s: %w", s.Addr, sql, err)
	}
	return nil
}

func postgresPing(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// runTool runs a setup program (initdb, mariadb-install-db) to completion,
// returning its output in the error when it fails.
func runTool(spec proc.Spec) error {
	ctx, cancel := context.WithTimeout(context.Background(), slowStartTimeout)
	defer cancel()
	p, err := proc.Start(ctx, spec)
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	if err := p.Wait(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("testserver: %s: %w\n--- output (tail) ---\n%s", spec.Name, err, tail(p.Output(), failureTailBytes))
	}
	return nil
}
