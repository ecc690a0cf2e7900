package servers

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roamsession/roam/internal/proc"
)

// PostgresOptions configures StartPostgres. The zero value is ready to use.
type PostgresOptions struct {
	// BinDir holds postgres and initdb; PostgresBinDir when empty.
	BinDir string
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// Settings are extra server settings as "name=value", passed as -c
	// flags after the package's own (so they win).
	Settings []string
}

// Postgres is a running PostgreSQL. Kill is a crash, after which committed
// data survives (recovery replays the WAL); Stop is a fast shutdown that
// disconnects clients.
type Postgres struct {
	Addr     string // host:port
	Host     string
	Port     int
	User     string // a superuser; trust authentication, no password
	Database string
	Dir      string // holds data/ and the unix socket

	*Instance
}

// postgresSettings make startup fast: no fsync (the data directory is
// thrown away, and a killed process's writes still reach the page cache, so
// Kill loses nothing committed: synchronous_commit stays on for that),
// little memory, no background work, dynamic shared memory in the data
// directory rather than /dev/shm (nothing is left behind by a Kill).
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

// StartPostgres runs initdb into a fresh temporary directory, starts
// postgres on a free port (with its unix socket in that directory too),
// creates the database "roam" and returns once it accepts queries; the
// teardown is registered with c. It takes about a second, mostly initdb.
//
// initdb and postgres refuse to run as root; when the program is root, they
// run as the system user roamtest, which is created if missing (nobody if
// that fails). It fails with a *NotInstalledError when PostgreSQL is not
// installed.
func StartPostgres(c Cleaner, o PostgresOptions) (*Postgres, error) {
	binDir := o.BinDir
	if binDir == "" {
		var err error
		if binDir, err = PostgresBinDir(); err != nil {
			return nil, err
		}
	}
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
		return nil, fmt.Errorf("servers: %w", err)
	}
	if err := chownTree(dir, cred); err != nil {
		return nil, fmt.Errorf("servers: give %s to the postgres user: %w", dir, err)
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

	var s *Postgres
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
		in := &Instance{
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
		s = &Postgres{Addr: addr, Host: host, Port: port, User: "roam", Database: "roam", Dir: dir, Instance: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.register(c)
	if err := s.Exec(`CREATE DATABASE "roam"`); err != nil {
		return nil, err
	}
	return s, nil
}

// DSN returns the database's URL in the form pgx and lib/pq accept:
// postgres://roam@127.0.0.1:PORT/DB?sslmode=disable.
func (s *Postgres) DSN() string { return postgresDSN(s.User, s.Addr, s.Database) }

func postgresDSN(user, addr, db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Exec runs one statement as the superuser in the maintenance database
// (postgres), such as CREATE DATABASE. It fails when the server cannot be
// reached within 30 s or the statement fails.
func (s *Postgres) Exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresDSN(s.User, s.Addr, "postgres"))
	if err != nil {
		return fmt.Errorf("servers: postgres %s: %w", s.Addr, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("servers: postgres %s: %s: %w", s.Addr, sql, err)
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
		return fmt.Errorf("servers: %w", err)
	}
	if err := p.Wait(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("servers: %s: %w\n--- output (tail) ---\n%s", spec.Name, err, tail(p.Output(), failureTailBytes))
	}
	return nil
}
