package testserver_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls check until it succeeds or 20 s pass.
func eventually(t *testing.T, what string, check func(context.Context) error) {
	t.Helper()
	if err := proc.Poll(ctxFor(t, 20*time.Second), check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func redisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisStopKeepsDataKillLosesUnsaved(t *testing.T) {
	r := testserver.Redis(t)
	c := redisClient(t, r.Addr)
	ctx := ctxFor(t, 60*time.Second)
	if err := c.Set(ctx, "saved", "1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	r.Stop()
	if r.Running() {
		t.Fatal("Running() after Stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded against a stopped server")
	}
	r.Restart()
	if got, err := c.Get(ctx, "saved").Result(); err != nil || got != "1" {
		t.Fatalf("GET saved after Stop+Restart = %q, %v; want \"1\" (saved on SIGTERM)", got, err)
	}

	if err := c.Set(ctx, "unsaved", "2", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	pid := r.Proc().PID()
	r.Kill()
	r.Restart()
	if r.Proc().PID() == pid {
		t.Fatal("Restart after Kill reused the dead process")
	}
	if err := c.Get(ctx, "unsaved").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET unsaved after Kill+Restart = %v, want redis.Nil (nothing saved it)", err)
	}
	if got, err := c.Get(ctx, "saved").Result(); err != nil || got != "1" {
		t.Fatalf("GET saved after Kill+Restart = %q, %v; want \"1\" from the dump", got, err)
	}
}

func TestRedisAppendOnlySurvivesKill(t *testing.T) {
	r := testserver.Redis(t, testserver.RedisOptions{AppendOnly: true, Host: "127.0.0.2"})
	if !strings.HasPrefix(r.Addr, "127.0.0.2:") {
		t.Fatalf("Addr = %s, want it on 127.0.0.2", r.Addr)
	}
	c := redisClient(t, r.Addr)
	ctx := ctxFor(t, 60*time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	r.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Kill+Restart with AOF = %q, %v; want \"v\"", got, err)
	}
}

func TestRedisReplica(t *testing.T) {
	primary := testserver.Redis(t)
	replica := testserver.Redis(t, testserver.RedisOptions{ReplicaOf: primary})
	ctx := ctxFor(t, 30*time.Second)
	if err := redisClient(t, primary.Addr).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rc := redisClient(t, replica.Addr)
	eventually(t, "replica to receive the write", func(ctx context.Context) error {
		got, err := rc.Get(ctx, "k").Result()
		if err != nil {
			return err
		}
		if got != "v" {
			return fmt.Errorf("replica has %q", got)
		}
		return nil
	})
	role, err := rc.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "slave" {
		t.Fatalf("replica ROLE = %v, %v; want slave", role, err)
	}
}

func TestRedisFreezeMakesItUnresponsive(t *testing.T) {
	r := testserver.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, ReadTimeout: 200 * time.Millisecond})
	defer c.Close()
	ctx := ctxFor(t, 30*time.Second)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Proc().Freeze(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered by a frozen server")
	}
	if err := r.Proc().Thaw(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "thawed server to answer", func(ctx context.Context) error { return c.Ping(ctx).Err() })
}

func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	s := testserver.RedisSentinel(t)
	if len(s.SentinelAddrs) != 3 {
		t.Fatalf("SentinelAddrs = %v, want 3", s.SentinelAddrs)
	}
	if got := s.MasterAddr(); got != s.Master.Addr {
		t.Fatalf("MasterAddr() = %s, want the master as started, %s", got, s.Master.Addr)
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName,
		SentinelAddrs: s.SentinelAddrs,
		DialTimeout:   time.Second,
	})
	defer c.Close()
	ctx := ctxFor(t, 60*time.Second)
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET through sentinel: %v", err)
	}
	// WAIT until the replica has acknowledged it, so the failover keeps it.
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}

	old := s.KillMaster()
	newMaster := s.WaitFailover(old)
	if newMaster != s.Replica.Addr {
		t.Fatalf("new master %s, want the replica %s", newMaster, s.Replica.Addr)
	}
	eventually(t, "failover client to read from the new master", func(ctx context.Context) error {
		got, err := c.Get(ctx, "k").Result()
		if err != nil {
			return err
		}
		if got != "before" {
			return fmt.Errorf("got %q", got)
		}
		return c.Set(ctx, "k", "after", 0).Err()
	})

	// The old master can be brought back on its old address.
	s.Server(old).Restart()
	if err := redisClient(t, old).Ping(ctx).Err(); err != nil {
		t.Fatalf("old master after Restart: %v", err)
	}
}

func TestRedisClusterFailover(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t, testserver.ClusterOptions{Replicas: true})
	if len(cl.Addrs) != 6 || cl.NodeTimeout != 2*time.Second {
		t.Fatalf("Addrs = %v, NodeTimeout = %v; want 6 nodes and the 2s default", cl.Addrs, cl.NodeTimeout)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs, DialTimeout: time.Second})
	defer c.Close()
	ctx := ctxFor(t, 90*time.Second)
	for _, addr := range cl.Addrs {
		info, err := redisClient(t, addr).ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("CLUSTER INFO on %s = %q, %v", addr, info, err)
		}
	}
	role, err := redisClient(t, cl.Addrs[0]).Do(ctx, "ROLE").Slice()
	if err != nil || role[0] != "master" {
		t.Fatalf("node 0 ROLE = %v, %v; want master (masters come first)", role, err)
	}
	const keys = 30
	for i := range keys {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET k%d: %v", i, err)
		}
	}
	// Make sure node 0's replica has node 0's keys before killing it.
	if n, err := redisClient(t, cl.Addrs[0]).Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT on node 0 = %d, %v", n, err)
	}

	cl.Kill(0)
	cl.WaitOK()
	eventually(t, "every key readable after failover", func(ctx context.Context) error {
		// go-redis refreshes its slot map on MOVED, or every 60 s, but not
		// when the old master refuses connections: ask it to.
		c.ReloadState(ctx)
		for i := range keys {
			got, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Int()
			if err != nil {
				return fmt.Errorf("k%d: %w", i, err)
			}
			if got != i {
				return fmt.Errorf("k%d = %d", i, got)
			}
		}
		return nil
	})
}

func TestMemcachedKillAndRestart(t *testing.T) {
	m := testserver.Memcached(t)
	c := memcache.New(m.Addr)
	c.Timeout = time.Second
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if it, err := c.Get("k"); err != nil || string(it.Value) != "v" {
		t.Fatalf("Get = %v, %v", it, err)
	}
	m.Kill()
	if err := c.Ping(); err == nil {
		t.Fatal("Ping succeeded against a killed server")
	}
	m.Restart()
	eventually(t, "memcached back", func(context.Context) error { return c.Ping() })
	if _, err := c.Get("k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get after restart = %v, want ErrCacheMiss (memcached keeps nothing)", err)
	}
}

func TestMemcachedN(t *testing.T) {
	servers := testserver.MemcachedN(t, 3)
	seen := map[string]bool{}
	for _, s := range servers {
		if seen[s.Addr] {
			t.Fatalf("duplicate address %s", s.Addr)
		}
		seen[s.Addr] = true
		if err := memcache.New(s.Addr).Ping(); err != nil {
			t.Fatalf("Ping %s: %v", s.Addr, err)
		}
	}
}

func openSQL(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostgresKillAndRestart(t *testing.T) {
	pg := testserver.Postgres(t)
	if !strings.HasPrefix(pg.DSN(), "postgres://roam@127.0.0.1:") || !strings.HasSuffix(pg.DSN(), "/roam?sslmode=disable") {
		t.Fatalf("DSN() = %s, want postgres://roam@127.0.0.1:PORT/roam?sslmode=disable", pg.DSN())
	}
	db := openSQL(t, "pgx", pg.DSN())
	ctx := ctxFor(t, 90*time.Second)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('a', '1')`); err != nil {
		t.Fatal(err)
	}
	pg.Kill()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("Ping succeeded against a killed postgres")
	}
	pg.Restart()
	var v string
	eventually(t, "committed row after crash recovery", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = 'a'`).Scan(&v)
	})
	if v != "1" {
		t.Fatalf("v = %q after Kill+Restart, want \"1\"", v)
	}
	pg.Stop()
	pg.Restart()
	eventually(t, "row after Stop+Restart", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = 'a'`).Scan(&v)
	})
}

func TestSharedPostgresGivesEachTestItsOwnDatabase(t *testing.T) {
	var dsns []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			pg := testserver.SharedPostgres(t)
			dsns = append(dsns, pg.DSN())
			db := openSQL(t, "pgx", pg.DSN())
			// The same table name in both: it must not collide.
			if _, err := db.Exec(`CREATE TABLE kv (k text PRIMARY KEY)`); err != nil {
				t.Fatalf("CREATE TABLE in %s: %v", pg.Database, err)
			}
		})
	}
	if len(dsns) == 2 && dsns[0] == dsns[1] {
		t.Fatalf("both tests got %s", dsns[0])
	}
}

func TestMariaDBStopAndRestart(t *testing.T) {
	m := testserver.MariaDB(t)
	want := fmt.Sprintf("roam:roam@tcp(%s)/roam?parseTime=true", m.Addr)
	if m.DSN() != want {
		t.Fatalf("DSN() = %s, want %s", m.DSN(), want)
	}
	db := openSQL(t, "mysql", m.DSN())
	ctx := ctxFor(t, 90*time.Second)
	for _, q := range []string{`CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY, v TEXT)`, `INSERT INTO kv VALUES ('a', '1')`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	m.Stop()
	m.Restart()
	var v string
	eventually(t, "row after Stop+Restart", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = 'a'`).Scan(&v)
	})
	if v != "1" {
		t.Fatalf("v = %q, want \"1\"", v)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO kv VALUES ('b', '2')`); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("Ping succeeded against a killed mariadbd")
	}
	m.Restart()
	eventually(t, "committed row after crash recovery", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = 'b'`).Scan(&v)
	})
	if v != "2" {
		t.Fatalf("v = %q after Kill+Restart, want \"2\"", v)
	}
}

func TestSharedMariaDBGivesEachTestItsOwnDatabase(t *testing.T) {
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			m := testserver.SharedMariaDB(t)
			names = append(names, m.Database)
			db := openSQL(t, "mysql", m.DSN())
			if _, err := db.Exec(`CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY)`); err != nil {
				t.Fatalf("CREATE TABLE in %s: %v", m.Database, err)
			}
		})
	}
	if len(names) == 2 && names[0] == names[1] {
		t.Fatalf("both tests got database %s", names[0])
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of acting
// on the real test; both end its goroutine, as the real ones do.
type recorder struct {
	testing.TB
	mu          sync.Mutex
	fatal, skip string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return "TestRecorder" }
func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.skip = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func runRecorded(f func(testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestRequireMissingBinary(t *testing.T) {
	t.Setenv("CI", "")
	r := runRecorded(func(tb testing.TB) { testserver.Require(tb, "roam-no-such-server", "roam-pkg") })
	if r.fatal != "" || !strings.Contains(r.skip, "roam-pkg") || !strings.Contains(r.skip, "SKIPPING") {
		t.Fatalf("outside CI: fatal=%q skip=%q; want a loud skip naming the package", r.fatal, r.skip)
	}
	t.Setenv("CI", "true")
	r = runRecorded(func(tb testing.TB) { testserver.Require(tb, "roam-no-such-server", "roam-pkg") })
	if r.skip != "" || !strings.Contains(r.fatal, "apt-get install -y roam-pkg") {
		t.Fatalf("under CI: fatal=%q skip=%q; want a failure naming the package", r.fatal, r.skip)
	}
	if path := testserver.Require(t, "sh", "dash"); !strings.HasSuffix(path, "/sh") {
		t.Fatalf("Require(sh) = %q", path)
	}
}
