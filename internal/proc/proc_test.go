package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a parent process that starts a
// child with proc and then waits to be killed (see TestMain).
const helperEnv = "ROAM_PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "parent" {
		runHelperParent()
		return
	}
	os.Exit(m.Run())
}

// runHelperParent starts `sleep 300` through proc, reports its PID on stdout
// and blocks until it is killed.
func runHelperParent() {
	p, err := Start(context.Background(), Spec{Path: "sleep", Args: []string{"300"}})
	if err != nil {
		fmt.Println("start failed:", err)
		os.Exit(1)
	}
	fmt.Printf("child-pid %d\n", p.PID())
	select {}
}

func start(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.Path, err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	return p
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// procState returns the state letter of pid from /proc ('R', 'S', 'T', 'Z',
// …), or 0 when the process no longer exists.
func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may contain spaces: the state
	// is the first field after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		t.Fatalf("unparseable /proc/%d/stat: %q", pid, b)
	}
	return b[i+2]
}

func gone(t *testing.T, pid int) bool {
	s := procState(t, pid)
	return s == 0 || s == 'Z' || s == 'X'
}

func requireProcFS(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	err := Poll(ctxTimeout(t, d), func(context.Context) error {
		if cond() {
			return nil
		}
		return errors.New(what + " not yet")
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// outputPID waits for a line "<prefix> N" in p's output and returns N.
func outputPID(t *testing.T, p *Process, prefix string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid line "+prefix, 10*time.Second, func() bool {
		for _, line := range strings.Split(p.Output(), "\n") {
			if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
				n, err := strconv.Atoi(strings.TrimSpace(rest))
				if err == nil {
					pid = n
					return true
				}
			}
		}
		return false
	})
	return pid
}

func TestKillKillsTheProcess(t *testing.T) {
	requireProcFS(t)
	p := start(t, Spec{Path: "sleep", Args: []string{"300"}})
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited() not closed after Kill returned")
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Fatalf("Wait after Kill = %v, want an *exec.ExitError", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("wait status %v, want killed by SIGKILL", ws)
	}
	if !gone(t, p.PID()) {
		t.Fatalf("pid %d still exists after Kill", p.PID())
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("second Kill = %v, want nil", err)
	}
}

func TestKillReachesGrandchildInGroup(t *testing.T) {
	requireProcFS(t)
	p := start(t, Spec{Path: "sh", Args: []string{"-c", "sleep 300 & echo grandchild $!; wait"}})
	gc := outputPID(t, p, "grandchild")
	if gone(t, gc) {
		t.Fatalf("grandchild %d not running before Kill", gc)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "grandchild to die", 5*time.Second, func() bool { return gone(t, gc) })
}

func TestLeaderExitKillsRestOfGroup(t *testing.T) {
	requireProcFS(t)
	// The shell exits at once and leaves a background sleep behind.
	p := start(t, Spec{Path: "sh", Args: []string{"-c", "sleep 300 & echo grandchild $!"}})
	gc := outputPID(t, p, "grandchild")
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v, want nil (sh exits 0)", err)
	}
	waitFor(t, "left-behind grandchild to die", 5*time.Second, func() bool { return gone(t, gc) })
}

func TestStopUsesStopSignal(t *testing.T) {
	p := start(t, Spec{Path: "sleep", Args: []string{"300"}, StopSignal: syscall.SIGINT})
	begin := time.Now()
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Stop took %v; sleep dies on SIGINT at once", d)
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want *exec.ExitError", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("wait status %v, want killed by SIGINT", ws)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	requireProcFS(t)
	// The shell ignores SIGTERM, and so does the sleep it starts.
	p := start(t, Spec{Path: "sh", Args: []string{"-c", `trap "" TERM; sleep 300 & echo grandchild $!; wait`}})
	gc := outputPID(t, p, "grandchild")
	err := p.Stop(200 * time.Millisecond)
	if !errors.Is(err, ErrStopTimedOut) {
		t.Fatalf("Stop = %v, want ErrStopTimedOut", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("process not reaped after Stop escalated")
	}
	waitFor(t, "grandchild to die", 5*time.Second, func() bool { return gone(t, gc) })
}

func TestFreezeAndThaw(t *testing.T) {
	requireProcFS(t)
	// No external command in a loop: a shell that vforks one and is frozen
	// mid-vfork waits in state D, not T, for its stopped child.
	p := start(t, Spec{Path: "sh", Args: []string{"-c", "sleep 300 & echo grandchild $!; wait"}})
	gc := outputPID(t, p, "grandchild")
	if err := p.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	for _, pid := range []int{p.PID(), gc} {
		waitFor(t, fmt.Sprintf("pid %d stopped", pid), 5*time.Second, func() bool { return procState(t, pid) == 'T' })
	}
	if err := p.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	for _, pid := range []int{p.PID(), gc} {
		waitFor(t, fmt.Sprintf("pid %d running again", pid), 5*time.Second, func() bool {
			st := procState(t, pid)
			return st == 'S' || st == 'R'
		})
	}
}

func TestStopThawsFrozenProcess(t *testing.T) {
	p := start(t, Spec{Path: "sleep", Args: []string{"300"}})
	if err := p.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop of a frozen process = %v, want a graceful stop", err)
	}
}

func TestSignalsAfterExit(t *testing.T) {
	p := start(t, Spec{Path: "true"})
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := p.Freeze(); !errors.Is(err, ErrExited) {
		t.Fatalf("Freeze after exit = %v, want ErrExited", err)
	}
	if err := p.Thaw(); !errors.Is(err, ErrExited) {
		t.Fatalf("Thaw after exit = %v, want ErrExited", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill after exit = %v, want nil", err)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("Stop after exit = %v, want nil", err)
	}
}

func TestExitStatusAndOutput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	logPath := filepath.Join(t.TempDir(), "child.log")
	p := start(t, Spec{
		Path:    "sh",
		Args:    []string{"-c", `echo "out $GREETING"; echo oops >&2; exit 3`},
		Env:     []string{"GREETING=hello"},
		Stdout:  &stdout,
		Stderr:  &stderr,
		LogFile: logPath,
	})
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	if got := stdout.String(); got != "out hello\n" {
		t.Errorf("Stdout got %q, want %q", got, "out hello\n")
	}
	if got := stderr.String(); got != "oops\n" {
		t.Errorf("Stderr got %q, want %q", got, "oops\n")
	}
	for _, want := range []string{"out hello\n", "oops\n"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("Output() = %q, missing %q", p.Output(), want)
		}
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "out hello") || !strings.Contains(string(log), "oops") {
		t.Errorf("log file = %q, want both streams", log)
	}
}

func TestOutputKeepsOnlyTheTail(t *testing.T) {
	p := start(t, Spec{Path: "seq", Args: []string{"1", "50000"}}) // ~289 KB
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	out := p.Output()
	if len(out) != OutputSize {
		t.Fatalf("len(Output()) = %d, want %d", len(out), OutputSize)
	}
	if !strings.HasSuffix(out, "\n49999\n50000\n") {
		t.Fatalf("Output() ends %q, want the last lines", out[len(out)-20:])
	}
	if strings.HasPrefix(out, "1\n2\n") {
		t.Fatal("Output() still holds the first lines")
	}
}

func TestContextCancelKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Spec{Path: "sleep", Args: []string{"300"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	cancel()
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10s after its context was cancelled")
	}
}

func TestStartErrors(t *testing.T) {
	_, err := Start(context.Background(), Spec{Path: "roam-no-such-binary-xyz"})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Start(missing binary) = %v, want exec.ErrNotFound", err)
	}
	if _, err := Start(context.Background(), Spec{}); err == nil {
		t.Error("Start(empty Spec) = nil error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Spec{Path: "sleep", Args: []string{"300"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start(cancelled ctx) = %v, want context.Canceled", err)
	}
}

func TestConcurrentSignals(t *testing.T) {
	p := start(t, Spec{Path: "sleep", Args: []string{"300"}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = p.Freeze()
			_ = p.Thaw()
			_ = p.Output()
		})
	}
	wg.Go(func() { _ = p.Kill() })
	wg.Wait()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}

// TestChildDiesWithCrashedParent starts this test binary as a parent that
// starts `sleep`, SIGKILLs the parent (a crash: no cleanup runs), and
// checks the sleep dies too, through the parent-death signal.
func TestChildDiesWithCrashedParent(t *testing.T) {
	requireProcFS(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := start(t, Spec{Name: "helper-parent", Path: exe, Args: []string{"-test.run=^$"}, Env: []string{helperEnv + "=parent"}})
	child := outputPID(t, parent, "child-pid")
	if gone(t, child) {
		t.Fatalf("child %d not running", child)
	}
	// The child is in a group of its own, so killing the parent's group
	// does not reach it: only the parent-death signal can.
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "orphaned child to die", 10*time.Second, func() bool { return gone(t, child) })
}
