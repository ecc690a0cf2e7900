package testbin

import (
	"bytes"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// maxLine bounds what a LineWatcher keeps of a line still being written.
const maxLine = 64 << 10

// LineWatcher is an io.Writer, for proc.Spec.Stdout or Stderr, that catches
// the first complete line of output matching a pattern. Its zero value is
// not usable: create one with NewLineWatcher.
type LineWatcher struct {
	re    *regexp.Regexp
	mu    sync.Mutex
	buf   []byte
	done  bool
	found chan []string // receives the submatches once
}

// NewLineWatcher returns a watcher for lines matching pattern, which is
// matched against each line without its newline. It panics when pattern is
// not a valid regular expression, as regexp.MustCompile does.
func NewLineWatcher(pattern string) *LineWatcher {
	return &LineWatcher{re: regexp.MustCompile(pattern), found: make(chan []string, 1)}
}

// Write scans p for the watched line. It never fails; once the line was
// found it discards what follows.
func (w *LineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			// A line this long is no line a test waits for; keep the
			// buffer bounded however much a process writes without one.
			if len(w.buf) > maxLine {
				w.buf = w.buf[len(w.buf)-maxLine:]
			}
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if m := w.re.FindStringSubmatch(line); m != nil {
			w.done, w.buf = true, nil
			w.found <- m
			return len(p), nil
		}
	}
}

// Await returns the submatches of the watched line once p has written it.
// It fails t, quoting p's output, when p exits first or timeout passes.
func (w *LineWatcher) Await(t testing.TB, p *proc.Process, timeout time.Duration) []string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-w.found:
		return m
	case <-p.Exited():
		// The line may have been the last thing p wrote before exiting.
		select {
		case m := <-w.found:
			return m
		default:
		}
		t.Fatalf("%s exited (%v) before printing a line matching %q; output:\n%s", p, p.Wait(), w.re, p.Output())
	case <-timer.C:
		t.Fatalf("%s printed no line matching %q within %v; output:\n%s", p, w.re, timeout, p.Output())
	}
	return nil
}
