// Package servers starts real store servers from the machine's Debian
// packages: Redis (standalone, replicated, Sentinel, Cluster), Memcached,
// PostgreSQL and MariaDB. internal/testserver wraps it for tests; `roam
// demo` and `roam bench` use it directly, to run a local server when the
// user names none.
//
// Each Start function picks free loopback ports, puts the server's files in
// a fresh temporary directory, starts it through internal/proc (its own
// process group, killed if the parent dies), waits until it answers its own
// protocol (PING, version, a SQL ping: never a sleep), and registers with a
// Cleaner the teardown that stops it by PID and removes the directory.
// Handles expose the address, a DSN where there is one, and Kill, Stop and
// Restart (same port, same data) for crash tests.
//
// A testing.TB is a Cleaner; so is a Group, which a program closes when it
// is done:
//
//	var g servers.Group
//	defer g.Close()
//	r, err := servers.StartRedis(&g, servers.RedisOptions{})
//	if err != nil { … }
//	client := redis.NewClient(&redis.Options{Addr: r.Addr})
//
// A missing binary fails with an error wrapping ErrNotInstalled that names
// the Debian package to install.
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the program runs as root,
// PostgreSQL runs as the system user roamtest, created with useradd on
// first use (nobody if that fails); its directory is given to that user.
// Memcached and MariaDB are told to stay root (-u root, --user=root).
package servers
