package launch

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
)

// readyLine is what roam node prints to stdout once it serves:
//
//	roam node ID listening on http://ADDR store=KIND
var readyLine = regexp.MustCompile(`^roam node (\S+) listening on http://(\S+) store=(\S+)$`)

// readyWatcher is an io.Writer that watches a node's stdout for its ready
// line and sends the address on addr, once.
type readyWatcher struct {
	id   string
	addr chan string

	mu   sync.Mutex
	buf  []byte
	done bool
}

func newReadyWatcher(id string) *readyWatcher {
	return &readyWatcher{id: id, addr: make(chan string, 1)}
}

func (w *readyWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if m := readyLine.FindStringSubmatch(line); m != nil && m[1] == w.id {
			w.done, w.buf = true, nil
			w.addr <- m[2]
			break
		}
	}
	// A node prints nothing else on stdout; bound the buffer anyway.
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[len(w.buf)-(64<<10):]
	}
	return len(p), nil
}

// teeWriter writes to every non-nil writer; proc serialises the calls.
func teeWriter(ws ...io.Writer) io.Writer {
	var out []io.Writer
	for _, w := range ws {
		if w != nil {
			out = append(out, w)
		}
	}
	return io.MultiWriter(out...)
}

// prefixWriter writes whole lines to w, each starting with prefix. Nodes
// share w, so a line is written in one call and never torn.
type prefixWriter struct {
	w      io.Writer
	prefix string

	mu  sync.Mutex
	buf []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(p.prefix)+i+1)
		line = append(append(line, p.prefix...), p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
		// An output failure must not stall the node: drop the error.
		_, _ = p.w.Write(line)
	}
	return len(b), nil
}

func lastLine(s string) string { return lastLines(s, 1) }

// lastLines returns the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			keep = append(keep, lines[i])
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	return strings.Join(keep, "\n")
}

// redact replaces the password of a URL-shaped spec with "xxxxx", as
// storespec.Redact does (launch passes specs, it does not parse them).
func redact(spec string) string {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		return spec
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return spec
	}
	if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
	}
	return spec
}
