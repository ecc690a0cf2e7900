package testserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sbinDirs are searched after PATH: Debian installs daemons such as mariadbd
// in /usr/sbin, which is not on an unprivileged user's PATH.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

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

func lookBinary(binary string) (string, error) {
	path, err := exec.LookPath(binary)
	if err == nil || strings.ContainsRune(binary, '/') {
		return path, err
	}
	for _, dir := range sbinDirs {
		if p, err2 := exec.LookPath(filepath.Join(dir, binary)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

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
// binaries: the newest /usr/lib/postgresql/<version>/bin (Debian keeps them
// off PATH), else the directory of a postgres found in PATH.
func postgresBinDir(t testing.TB) string {
	t.Helper()
	best, bestVer := "", -1
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	for _, m := range matches {
		dir := filepath.Dir(m)
		ver, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil && ver > bestVer {
			best, bestVer = dir, ver
		}
	}
	if best != "" {
		return best
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	missing(t, "postgres and initdb", "postgresql")
	return ""
}
