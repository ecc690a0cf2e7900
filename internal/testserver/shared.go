package testserver

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// registry holds the servers shared by the tests of one test binary. It is
// package state on purpose: "once per test binary" is a property of the
// process, and Main, which stops the servers, has no handle to pass around.
var registry sharedRegistry

type sharedRegistry struct {
	mu       sync.Mutex
	main     bool // Main is running the tests
	postgres sharedSlot[*PostgresServer]
	mariadb  sharedSlot[*MariaDBServer]
	seq      atomic.Int64 // numbers the per-test databases

	cleanupMu sync.Mutex
	cleanups  []func()
}

// sharedSlot is one lazily started shared server; a failed start is
// remembered so every later test fails at once with the same error.
type sharedSlot[S any] struct {
	started bool
	srv     S
	err     error
}

// Cleanup registers f to run when Main ends, after the tests; it makes the
// registry a cleaner for servers it owns.
func (r *sharedRegistry) Cleanup(f func()) {
	r.cleanupMu.Lock()
	defer r.cleanupMu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// shutdown runs the cleanups in reverse order, like testing's.
func (r *sharedRegistry) shutdown() {
	r.cleanupMu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

var errNoMain = errors.New("testserver: shared servers need the package's TestMain to call testserver.Main(m), " +
	"which stops them and removes their files after the tests")

// Main runs the tests of a package that uses SharedPostgres or SharedMariaDB
// and then stops those servers, removes their files and exits with the
// tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testserver.Main(m) }
//
// Shared servers are killed with the test binary even without Main (they
// get the parent-death signal), but their temporary directories would stay.
func Main(m *testing.M) {
	registry.mu.Lock()
	registry.main = true
	registry.mu.Unlock()
	code := m.Run()
	registry.shutdown()
	os.Exit(code)
}

// getShared returns the slot's server, starting it with start on first use.
func getShared[S any](slot *sharedSlot[S], start func() (S, error)) (S, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if !registry.main {
		var zero S
		return zero, errNoMain
	}
	if !slot.started {
		slot.srv, slot.err = start()
		slot.started = true
	}
	return slot.srv, slot.err
}

// SharedPostgres returns a database of the test's own, created on a
// PostgreSQL server that is started by the first test that asks and shared
// by every test of the binary; the database is dropped when the test ends.
// The package's TestMain must call Main. Kill, Stop and Restart fail the
// test: a test that takes the server down needs Postgres(t). It skips the
// test (fails it under CI) when PostgreSQL is not installed.
func SharedPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	binDir := postgresBinDir(t)
	srv, err := getShared(&registry.postgres, func() (*PostgresServer, error) {
		return startPostgres(&registry, binDir, PostgresOptions{})
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	db := fmt.Sprintf("t%d", registry.seq.Add(1))
	if err := srv.exec(fmt.Sprintf(`CREATE DATABASE %q`, db)); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		// FORCE: a test that leaks a connection must not keep its database.
		if err := srv.exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, db)); err != nil {
			t.Logf("testserver: %v", err)
		}
	})
	view := *srv
	view.Database, view.shared, view.h.t = db, true, t
	return &view
}

// SharedMariaDB returns a database of the test's own, created on a MariaDB
// server that is started by the first test that asks and shared by every
// test of the binary; the database is dropped when the test ends. The
// package's TestMain must call Main. Kill, Stop and Restart fail the test: a
// test that takes the server down needs MariaDB(t). It skips the test (fails
// it under CI) when MariaDB is not installed.
func SharedMariaDB(t testing.TB) *MariaDBServer {
	t.Helper()
	daemon, installer := requireMariaDB(t)
	srv, err := getShared(&registry.mariadb, func() (*MariaDBServer, error) {
		return startMariaDB(&registry, daemon, installer, MariaDBOptions{})
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	db := fmt.Sprintf("t%d", registry.seq.Add(1))
	if err := srv.exec(fmt.Sprintf("CREATE DATABASE `%s`", db)); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := srv.exec(fmt.Sprintf("DROP DATABASE IF EXISTS `%s`", db)); err != nil {
			t.Logf("testserver: %v", err)
		}
	})
	view := *srv
	view.Database, view.shared, view.h.t = db, true, t
	return &view
}
