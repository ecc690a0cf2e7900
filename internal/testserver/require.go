package testserver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/roamsession/roam/internal/servers"
)

// CI reports whether the tests run under CI, meaning the environment
// variable CI is set to a true value ("true", "1"). Under CI a missing
// server binary fails the test instead of skipping it, so a green CI run
// means every store was tested against its real server.
func CI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

// Require returns the path of the executable binary, searched in PATH and
// then in /usr/sbin, /usr/local/sbin and /sbin. When it is missing, Require
// fails the test under CI (see CI) and otherwise skips it, naming the Debian
// package aptPackage that provides the binary.
func Require(t testing.TB, binary, aptPackage string) string {
	t.Helper()
	path, err := lookBinary(binary)
	if err != nil {
		missing(t, binary, aptPackage)
	}
	return path
}

func lookBinary(binary string) (string, error) { return servers.LookBinary(binary) }

func missing(t testing.TB, binary, aptPackage string) {
	t.Helper()
	msg := fmt.Sprintf("testserver: %s NOT FOUND: install the Debian package %q (apt-get install -y %s, or `make deps`)",
		binary, aptPackage, aptPackage)
	if CI() {
		t.Fatalf("%s; CI=true, so a missing server is a failure, not a skip", msg)
	}
	t.Skipf("!!! SKIPPING %s: %s; under CI=true this test fails instead", t.Name(), msg)
}

// postgresBinDir returns the directory holding the postgres and initdb
// binaries (see servers.PostgresBinDir), skipping the test (failing it under
// CI) when PostgreSQL is not installed.
func postgresBinDir(t testing.TB) string {
	t.Helper()
	dir, err := servers.PostgresBinDir()
	if err != nil {
		var ni *servers.NotInstalledError
		if errors.As(err, &ni) {
			missing(t, ni.Binary, ni.Package)
		}
		t.Fatalf("testserver: %v", err)
	}
	return dir
}
