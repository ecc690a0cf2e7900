// Package testserver starts real servers, from the machine's Debian
// packages, for tests: Redis (standalone, replicated, Sentinel, Cluster),
// Memcached, PostgreSQL and MariaDB. Every store in roam is tested against
// the real thing, never a fake.
//
// Each constructor takes the test, picks free loopback ports, puts the
// server's files in a fresh temporary directory, starts it through
// internal/proc (its own process group, killed if the test binary dies),
// waits until it answers its own protocol (PING, version, a SQL ping: never
// a sleep), and registers a cleanup that stops it by PID and removes the
// directory. Handles expose the address, a DSN where there is one, and
// Kill, Stop and Restart (same port, same data) so a store can be tested
// against a server that crashes and comes back:
//
//	r := testserver.Redis(t)
//	client := redis.NewClient(&redis.Options{Addr: r.Addr})
//	r.Kill()    // a crash
//	r.Restart() // back on the same port
//
// A missing binary skips the test with a message naming the Debian package
// to install, except under CI (CI=true), where it fails the test: a green CI
// run means every store met its real server. `make deps` installs them all.
//
// # Cost, and sharing a server
//
// Redis and Memcached start in milliseconds: start one per test. PostgreSQL
// (initdb) and MariaDB (mariadb-install-db) take about a second each, so a
// package's tests should share one server, started once per test binary,
// with a database of each test's own:
//
//	func TestMain(m *testing.M) { testserver.Main(m) }
//
//	func TestStore(t *testing.T) {
//		pg := testserver.SharedPostgres(t) // fresh database, dropped at the end
//		db, err := sql.Open("pgx", pg.DSN())
//		…
//	}
//
// Main stops the shared servers after the tests and removes their files. A
// test that kills or restarts its server takes one of its own with Postgres
// or MariaDB; the shared handles refuse to.
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the tests run as root,
// PostgreSQL runs as the system user roamtest, created with useradd on first
// use (nobody if that fails); its directory is given to that user.
// Memcached and MariaDB are told to stay root (-u root, --user=root).
//
// # Failures
//
// Constructors and handle methods fail the test (t.Fatalf) with the server's
// last output when it does not come up, so they must be called from the
// test's goroutine. When a test fails, the cleanup logs the tail of each of
// its servers' output.
package testserver
