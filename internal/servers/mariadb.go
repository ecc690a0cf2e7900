package servers

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/roamsession/roam/internal/proc"
)

// MariaDBOptions configures StartMariaDB. The zero value is ready to use.
type MariaDBOptions struct {
	// Daemon and Installer are the paths of mariadbd and
	// mariadb-install-db; MariaDBBinaries when empty.
	Daemon, Installer string
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// Args are extra mariadbd flags, after the package's own (so they win),
	// such as "--max-connections=20".
	Args []string
}

// MariaDB is a running MariaDB. Kill is a crash, after which committed
// transactions survive (InnoDB recovers them); Stop shuts it down cleanly.
type MariaDB struct {
	Addr     string // host:port
	Host     string
	Port     int
	User     string // has every privilege, from any host
	Password string
	Database string
	Dir      string // holds data/, the unix socket and tmp/
	Socket   string // unix socket path; root connects there without a password

	*Instance
}

// mariadbFlags make startup fast: small buffers and logs, no doublewrite,
// the redo log written at each commit but never fsync'd (so a killed server
// keeps every commit; only a machine crash would lose them), no performance
// schema, and synchronous I/O (native AIO is unavailable in many
// containers).
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

// StartMariaDB runs mariadb-install-db into a fresh temporary directory,
// starts mariadbd on a free port, creates the database "roam" and a user
// roam/roam with every privilege, and returns once it accepts queries; the
// teardown is registered with c. It takes about a second. It fails with a
// *NotInstalledError when MariaDB is not installed.
func StartMariaDB(c Cleaner, o MariaDBOptions) (*MariaDB, error) {
	daemon, installer := o.Daemon, o.Installer
	if daemon == "" || installer == "" {
		var err error
		if daemon, installer, err = MariaDBBinaries(); err != nil {
			return nil, err
		}
	}
	host := loopbackHost(o.Host)
	dir, err := tempDir(c, "mdb")
	if err != nil {
		return nil, err
	}
	data, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	sock := filepath.Join(dir, "mysqld.sock")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("servers: %w", err)
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
	// socket and datadir) out of the server.
	install := append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M"}, asUser...)
	if err := runTool(proc.Spec{Name: filepath.Base(installer), Path: installer, Args: install, Dir: dir}); err != nil {
		return nil, err
	}

	rootDSN := mariadbRootDSN(sock)
	var s *MariaDB
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
		in := &Instance{
			name:         "mariadb " + addr,
			spec:         proc.Spec{Name: "mariadbd", Path: daemon, Args: args, Dir: dir},
			ready:        func(ctx context.Context) error { return sqlPing(ctx, rootDSN) },
			startTimeout: slowStartTimeout,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &MariaDB{Addr: addr, Host: host, Port: port, User: "roam", Password: "roam",
			Database: "roam", Dir: dir, Socket: sock, Instance: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.register(c)
	if err := s.Exec(
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
func (s *MariaDB) DSN() string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = s.User, s.Password
	cfg.Net, cfg.Addr = "tcp", s.Addr
	cfg.DBName = s.Database
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// URL returns the database as a mysql:// URL, the form roam node's --store
// takes: mysql://roam:roam@127.0.0.1:PORT/DB.
func (s *MariaDB) URL() string {
	return "mysql://" + s.User + ":" + s.Password + "@" + s.Addr + "/" + s.Database
}

// Exec runs statements as root over the unix socket. It fails at the first
// statement that fails.
func (s *MariaDB) Exec(stmts ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", mariadbRootDSN(s.Socket))
	if err != nil {
		return fmt.Errorf("servers: mariadb %s: %w", s.Addr, err)
	}
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("servers: mariadb %s: %s: %w", s.Addr, stmt, err)
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
