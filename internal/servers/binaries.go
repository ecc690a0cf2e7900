package servers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotInstalled is wrapped by the error a Start function returns when the
// server's binary is not on this machine (see NotInstalledError).
var ErrNotInstalled = errors.New("servers: not installed")

// NotInstalledError names the missing binary and the Debian package that
// provides it.
type NotInstalledError struct {
	Binary  string
	Package string
}

// Error says what is missing and how to install it.
func (e *NotInstalledError) Error() string {
	return fmt.Sprintf("servers: %s not found: install the Debian package %s (apt-get install -y %s)", e.Binary, e.Package, e.Package)
}

// Unwrap returns ErrNotInstalled.
func (e *NotInstalledError) Unwrap() error { return ErrNotInstalled }

// sbinDirs are searched after PATH: Debian installs daemons such as mariadbd
// in /usr/sbin, which is not on an unprivileged user's PATH.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// LookBinary returns the path of the executable binary, searched in PATH
// and then in /usr/sbin, /usr/local/sbin and /sbin. It returns exec's error
// when it is found nowhere.
func LookBinary(binary string) (string, error) {
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

// need returns the path of binary, or a *NotInstalledError naming pkg.
func need(binary, pkg string) (string, error) {
	path, err := LookBinary(binary)
	if err != nil {
		return "", &NotInstalledError{Binary: binary, Package: pkg}
	}
	return path, nil
}

// PostgresBinDir returns the directory holding the postgres and initdb
// binaries: the newest /usr/lib/postgresql/<version>/bin (Debian keeps them
// off PATH), else the directory of a postgres found in PATH. It returns a
// *NotInstalledError when there is neither.
func PostgresBinDir() (string, error) {
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
		return best, nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", &NotInstalledError{Binary: "postgres and initdb", Package: "postgresql"}
}

// MariaDBBinaries finds the MariaDB server and its installer under either of
// their names (mariadbd or mysqld, mariadb-install-db or
// mysql_install_db). It returns a *NotInstalledError when one is missing.
func MariaDBBinaries() (daemon, installer string, err error) {
	daemon, err = LookBinary("mariadbd")
	if err != nil {
		if daemon, err = need("mysqld", "mariadb-server"); err != nil {
			return "", "", &NotInstalledError{Binary: "mariadbd", Package: "mariadb-server"}
		}
	}
	installer, err = LookBinary("mariadb-install-db")
	if err != nil {
		if installer, err = need("mysql_install_db", "mariadb-server"); err != nil {
			return "", "", &NotInstalledError{Binary: "mariadb-install-db", Package: "mariadb-server"}
		}
	}
	return daemon, installer, nil
}
