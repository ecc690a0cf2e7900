// Package testbin gives tests the roam binary and real `roam node`
// processes started from it. It is a normal package so that every test
// package can share it, but only tests import it.
//
// The binary: Roam returns $ROAM_BINARY when it is set (`make test` builds
// ./cmd/roam once and exports it, so the many test binaries of one run share
// one build). Otherwise Roam runs `go build ./cmd/roam` once per test binary,
// in the module root, into a directory of its own under os.TempDir named
// roam-testbin-PID-…, and Main removes that directory when the tests end.
// A package that calls Roam therefore needs
//
//	func TestMain(m *testing.M) { testbin.Main(m) }
//
// (or Run, when its TestMain has more to do); Roam fails the test with that
// advice otherwise, so a forgotten TestMain cannot leave binaries behind
// unnoticed. A test binary killed before Main returns (by its -timeout, say)
// leaves its directory; the PID in the name says whose it was.
//
// The binary is built without -race: it is the program under test, run as
// a separate process, and building it with the race detector would double
// the build time of every package that starts one.
package testbin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EnvBinary is the environment variable naming an already-built roam
// binary. It must be an absolute path: go test runs each package's tests in
// that package's directory, so a relative path would name a different file
// in each.
const EnvBinary = "ROAM_BINARY"

// modulePath is the module whose ./cmd/roam Roam builds.
const modulePath = "github.com/roamsession/roam"

// buildTimeout bounds one `go build ./cmd/roam`; a cold build cache on a
// busy machine takes about a minute.
const buildTimeout = 5 * time.Minute

// built is the binary Roam built for this test binary. dir and path are
// written inside once.Do, and read only after it.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// mainRan is set by Run: only then is a built binary removed at exit.
var mainRan atomic.Bool

// Roam returns the path of a roam binary for t to run. It is $ROAM_BINARY
// when that is set, or else ./cmd/roam built once for this test binary (see
// the package documentation), shared by every test and safe to call from
// parallel tests.
//
// Roam fails t when the package's TestMain does not call Main or Run, when
// $ROAM_BINARY is not an absolute path to an executable file, or when the
// build fails (the error quotes the compiler's output).
func Roam(t testing.TB) string {
	t.Helper()
	if !mainRan.Load() {
		t.Fatalf("testbin: Roam needs the package's TestMain to call testbin.Main (or Run), which removes the binary it builds: add\n\tfunc TestMain(m *testing.M) { testbin.Main(m) }")
	}
	if p := os.Getenv(EnvBinary); p != "" {
		if err := checkBinary(p); err != nil {
			t.Fatalf("testbin: $%s: %v", EnvBinary, err)
		}
		return p
	}
	built.once.Do(build)
	if built.err != nil {
		t.Fatalf("testbin: %v", built.err)
	}
	return built.path
}

// Main runs the tests, removes the binary Roam built (if it built one) and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run runs the tests, removes the binary Roam built (if it built one) and
// returns the status to exit with, for a TestMain that has more to tear
// down. Processes still running from the binary are not affected: on Linux
// a running program's file may be removed.
func Run(m *testing.M) int {
	mainRan.Store(true)
	code := m.Run()
	// Waits for a build in progress (a test that timed out mid-build), and
	// keeps any later call from building again into a removed directory.
	built.once.Do(func() { built.err = errors.New("the tests have ended") })
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintf(os.Stderr, "testbin: remove %s: %v\n", built.dir, err)
		}
	}
	return code
}

// checkBinary returns an error unless path is an absolute path to an
// executable regular file.
func checkBinary(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%q is not an absolute path (each package's tests run in their own directory)", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file (mode %v)", path, fi.Mode())
	}
	return nil
}

// build runs `go build -o DIR/roam ./cmd/roam` in the module root.
func build() {
	goTool, err := exec.LookPath("go")
	if err != nil {
		built.err = fmt.Errorf("build roam: %w (or set $%s to a built binary)", err, EnvBinary)
		return
	}
	root, err := moduleRoot(goTool)
	if err != nil {
		built.err = fmt.Errorf("build roam: %w", err)
		return
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("roam-testbin-%d-", os.Getpid()))
	if err != nil {
		built.err = fmt.Errorf("build roam: %w", err)
		return
	}
	built.dir = dir
	path := filepath.Join(dir, "roam")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", path, "./cmd/roam")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		built.err = fmt.Errorf("go build ./cmd/roam in %s: %w\n%s", root, err, out)
		return
	}
	built.path = path
}

// moduleRoot returns the directory of roam's go.mod: the one `go env GOMOD`
// names for the working directory (a package directory, under go test),
// or else the one above this source file, for a test binary run from
// elsewhere. Either must declare module github.com/roamsession/roam.
func moduleRoot(goTool string) (string, error) {
	var candidates, tried []string
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	switch gomod := strings.TrimSpace(string(out)); {
	case err != nil:
		tried = append(tried, fmt.Sprintf("go env GOMOD: %v", err))
	case gomod == "" || gomod == os.DevNull:
		tried = append(tried, "the working directory is in no module")
	default:
		candidates = append(candidates, gomod)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", "go.mod"))
	}
	for _, gomod := range candidates {
		if err := checkModule(gomod); err != nil {
			tried = append(tried, err.Error())
			continue
		}
		return filepath.Dir(gomod), nil
	}
	return "", fmt.Errorf("cannot find the %s module (%s); set $%s to a built binary", modulePath, strings.Join(tried, "; "), EnvBinary)
}

// checkModule returns an error unless the go.mod file at path declares
// roam's module.
func checkModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			if name = strings.Trim(strings.TrimSpace(name), `"`); name != modulePath {
				return fmt.Errorf("%s is module %s, not %s", path, name, modulePath)
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return fmt.Errorf("%s has no module line", path)
}
