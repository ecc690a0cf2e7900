// Package proc starts child processes that belong to the caller: the real
// servers that tests, `roam demo` and `roam bench` run (roam node,
// redis-server, postgres, …).
//
// Each process is started in a process group of its own whose id is the
// child's PID, and on Linux with the parent-death signal set to SIGKILL, so a
// child never outlives a crashed parent. Kill, Freeze and Thaw signal that
// whole group, so helpers the child forked (postgres backends, a shell's
// pipeline) stop with it; Stop sends its polite signal to the child alone,
// which is how servers expect to be asked to shut down.
//
// proc only ever signals processes it started: it signals the group only
// while the group's leader is alive or an unreaped zombie, when the kernel
// cannot have handed that number to anyone else. When the leader exits,
// whatever is left of its group is killed, so nothing the child started
// outlives it either.
//
// The helpers WaitTCP, WaitHTTP and Poll wait on conditions with backoff
// until a context's deadline; FreePort and FreeAddr pick loopback ports.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrExited is returned by Freeze and Thaw when the process has already
// exited and been reaped: its PID may belong to someone else now.
var ErrExited = errors.New("proc: process has exited")

// ErrStopTimedOut is returned (wrapped) by Stop when the process did not
// exit within the timeout after the stop signal and had to be killed.
var ErrStopTimedOut = errors.New("proc: process did not stop in time and was killed")

// OutputSize is how many bytes of a process's most recent output (stdout and
// stderr interleaved) Output keeps.
const OutputSize = 64 << 10

// drainTimeout bounds how long the reaper waits, after the leader is gone,
// for the rest of the group to vanish and for the output pipes to reach EOF.
// Both normally take microseconds; the bound only matters when a descendant
// escaped the group (setsid) and still holds a pipe open.
const drainTimeout = 2 * time.Second

// Spec describes a process to start. Only Path is required.
type Spec struct {
	// Name labels the process in errors; the base name of Path when empty.
	Name string
	// Path is the executable: a path, or a name looked up in PATH.
	Path string
	// Args are the arguments, not including the program name.
	Args []string
	// Env holds extra "KEY=value" entries added to the parent's
	// environment; a key given here overrides the inherited value.
	Env []string
	// Dir is the working directory; the parent's when empty.
	Dir string
	// Stdout and Stderr, when set, receive a copy of the process's output.
	// Writes are serialised, so one writer may serve both. A slow writer
	// slows the child once its pipe fills.
	Stdout, Stderr io.Writer
	// LogFile, when set, is opened for appending (created 0644 when absent)
	// and receives both streams.
	LogFile string
	// StopSignal is what Stop sends first; SIGTERM when zero. PostgreSQL,
	// for example, wants SIGINT for a fast shutdown.
	StopSignal syscall.Signal
	// Credential, when set, runs the process as that user and group (the
	// caller must be root). Setting it here rather than with a wrapper such
	// as setpriv keeps the parent-death signal, which the kernel clears when
	// a process changes its credentials after it was set.
	Credential *syscall.Credential
}

// Process is a child process started by Start. Its methods are safe for
// concurrent use.
type Process struct {
	name       string
	pid        int
	cmd        *exec.Cmd
	stopSignal syscall.Signal

	out      *ring
	outMu    sync.Mutex // serialises writes to out, the user's writers and the log file
	logFile  *os.File
	copiers  sync.WaitGroup
	pipes    []*os.File // read ends, closed by the reaper
	exited   chan struct{}
	waitErr  error // set before exited is closed
	stopWait func() bool

	mu     sync.Mutex // guards reaped and frozen; held while signalling
	reaped bool       // the leader is reaped: its PID may be reused, never signal it again
	frozen bool
}

// Start starts the process described by spec and returns once it is running.
// It fails when the executable cannot be found (the error wraps
// exec.ErrNotFound), when the log file cannot be opened, or when the kernel
// refuses to start it.
//
// When ctx is done before the process exits, the process and its group are
// killed as by Kill; pass context.WithoutCancel(ctx) for a process that should
// outlive ctx. The process is never left running by a failed Start.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("proc: Spec.Path is empty")
	}
	name := spec.Name
	if name == "" {
		name = filepath.Base(spec.Path)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	path, err := exec.LookPath(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}

	p := &Process{
		name:       name,
		stopSignal: spec.StopSignal,
		out:        newRing(OutputSize),
		exited:     make(chan struct{}),
	}
	if p.stopSignal == 0 {
		p.stopSignal = syscall.SIGTERM
	}
	if spec.LogFile != "" {
		f, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("proc: start %s: open log file: %w", name, err)
		}
		p.logFile = f
	}

	// Own pipes rather than exec's io.Writer plumbing: exec.Cmd.Wait would
	// then wait for every holder of the pipe (a grandchild that escaped the
	// group) before reporting the exit.
	outR, outW, err := os.Pipe()
	if err != nil {
		p.closeLog()
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		p.closeLog()
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	p.pipes = []*os.File{outR, errR}

	cmd := &exec.Cmd{
		Path:        path,
		Args:        append([]string{path}, spec.Args...),
		Dir:         spec.Dir,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: sysProcAttr(spec.Credential),
	}
	if spec.Env != nil {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	p.cmd = cmd

	// The parent-death signal fires when the OS thread that forked the child
	// exits, not the process. Go only ends threads whose goroutine locked
	// them (runtime.LockOSThread) and returned, so fork from a fresh,
	// unlocked goroutine: the caller's may be locked.
	startErr := make(chan error, 1)
	go func() { startErr <- cmd.Start() }()
	err = <-startErr
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		p.closeLog()
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	p.pid = cmd.Process.Pid

	p.copiers.Add(2)
	go p.copy(outR, spec.Stdout)
	go p.copy(errR, spec.Stderr)
	p.stopWait = context.AfterFunc(ctx, func() { _ = p.signal(syscall.SIGKILL, true) })
	go p.reap()
	return p, nil
}

// PID returns the process id of the child, which is also its process group id.
func (p *Process) PID() int { return p.pid }

// Name returns the label used in errors.
func (p *Process) Name() string { return p.name }

// Exited returns a channel that is closed once the process has exited, been
// reaped, the rest of its group is gone and its output has been collected.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait blocks until the process has exited (see Exited) and returns its exit
// error: nil for status 0, an *exec.ExitError otherwise (including death by
// a signal).
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// Kill sends SIGKILL to the process and its group, then waits until it has
// been reaped. Killing a process that has already exited is not an error.
func (p *Process) Kill() error {
	if err := p.signal(syscall.SIGKILL, true); err != nil && !errors.Is(err, ErrExited) {
		return fmt.Errorf("proc: kill %s: %w", p.name, err)
	}
	<-p.exited
	return nil
}

// Stop asks the process to exit with its stop signal (SIGTERM unless
// Spec.StopSignal says otherwise), sent to the process alone, and waits up to
// timeout. A process that is still running then is killed with its group and
// Stop returns an error wrapping ErrStopTimedOut. A frozen process is thawed
// so it can act on the signal. Stopping an exited process returns nil.
func (p *Process) Stop(timeout time.Duration) error {
	if err := p.signal(p.stopSignal, false); err != nil {
		if errors.Is(err, ErrExited) {
			return nil
		}
		return fmt.Errorf("proc: stop %s: %w", p.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("proc: stop %s after %v: %w", p.name, timeout, ErrStopTimedOut)
}

// Freeze stops the process and its group with SIGSTOP, the way a hung or
// partitioned server looks from outside: connections stay open, nothing
// answers. It returns ErrExited when the process is gone.
func (p *Process) Freeze() error {
	if err := p.signal(syscall.SIGSTOP, true); err != nil {
		return fmt.Errorf("proc: freeze %s: %w", p.name, err)
	}
	return nil
}

// Thaw resumes a frozen process and its group with SIGCONT. It returns
// ErrExited when the process is gone.
func (p *Process) Thaw() error {
	if err := p.signal(syscall.SIGCONT, true); err != nil {
		return fmt.Errorf("proc: thaw %s: %w", p.name, err)
	}
	return nil
}

// Output returns the last OutputSize bytes the process wrote to stdout and
// stderr, for error messages.
func (p *Process) Output() string {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	return p.out.String()
}

// String describes the process as "name (pid N)".
func (p *Process) String() string { return fmt.Sprintf("%s (pid %d)", p.name, p.pid) }

// signal sends sig to the leader, and to its group when group is set. It
// returns ErrExited once the leader has been reaped: from then on its number
// may name a stranger's process.
func (p *Process) signal(sig syscall.Signal, group bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return ErrExited
	}
	if group {
		// ESRCH here only means the leader left its group (setsid); the
		// leader itself is signalled next either way.
		if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	switch sig {
	case syscall.SIGSTOP:
		p.frozen = true
	case syscall.SIGCONT, syscall.SIGKILL:
		p.frozen = false
	default:
		if p.frozen {
			// A stopped process keeps other signals pending; wake the group.
			_ = syscall.Kill(-p.pid, syscall.SIGCONT)
			_ = syscall.Kill(p.pid, syscall.SIGCONT)
			p.frozen = false
		}
	}
	return nil
}

// reap waits for the leader to exit, kills what is left of its group while
// the leader's zombie still reserves the group's number, reaps the leader,
// then waits (bounded) for the group to vanish and the output to drain.
func (p *Process) reap() {
	var err error
	if canWaitWithoutReaping {
		waitExited(p.pid)
	} else {
		// Without waitid(WNOWAIT) the exit is only seen by reaping it; a
		// signal racing with this window could reach a reused PID.
		err = p.cmd.Wait()
	}

	p.mu.Lock()
	if canWaitWithoutReaping {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		err = p.cmd.Wait()
	}
	p.reaped = true
	p.frozen = false
	p.mu.Unlock()
	p.stopWait()

	deadline := time.Now().Add(drainTimeout)
	if canWaitWithoutReaping {
		// Killed members take a moment to finish exiting.
		for delay := time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 50*time.Millisecond) {
			if !groupRunning(p.pid) {
				break
			}
			time.Sleep(delay)
		}
	}

	copied := make(chan struct{})
	go func() { p.copiers.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(time.Until(deadline)):
		// A descendant outside the group holds a pipe open: stop reading.
	}
	for _, f := range p.pipes {
		f.Close()
	}
	<-copied
	p.closeLog()

	p.waitErr = err
	close(p.exited)
}

func (p *Process) copy(r io.Reader, user io.Writer) {
	defer p.copiers.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p.outMu.Lock()
			p.out.Write(buf[:n])
			if user != nil {
				// A failing user writer must not stall the child: drop its error.
				_, _ = user.Write(buf[:n])
			}
			if p.logFile != nil {
				_, _ = p.logFile.Write(buf[:n])
			}
			p.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (p *Process) closeLog() {
	if p.logFile != nil {
		p.logFile.Close()
	}
}

// ring keeps the last max bytes written to it.
type ring struct {
	buf []byte
	max int
}

func newRing(max int) *ring { return &ring{max: max} }

func (r *ring) Write(b []byte) {
	r.buf = append(r.buf, b...)
	// Trim only when twice over, so trimming costs amortised O(1) per byte.
	if len(r.buf) > 2*r.max {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-r.max:]...)
	}
}

func (r *ring) String() string {
	if len(r.buf) > r.max {
		return string(r.buf[len(r.buf)-r.max:])
	}
	return string(r.buf)
}
