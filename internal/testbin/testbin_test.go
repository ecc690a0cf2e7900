package testbin

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// recorder is a testing.TB whose Fatal ends the calling goroutine and
// records the message instead of failing the real test, which it passes
// everything else to (Cleanup, Logf, Helper).
type recorder struct {
	testing.TB
	mu    sync.Mutex
	fatal string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recorder) Failed() bool { return r.TB.Failed() || r.message() != "" }

func (r *recorder) message() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal
}

// mustFail runs f with a recorder over t and returns the message it failed
// with; it fails t when f returned without failing.
func mustFail(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	msg := r.message()
	if msg == "" {
		t.Fatal("the call returned without failing the test")
	}
	return msg
}

func TestRoamBuildsOnceAndTheBinaryRuns(t *testing.T) {
	t.Setenv(EnvBinary, "") // the build path, even under make test
	first := Roam(t)
	if second := Roam(t); second != first {
		t.Fatalf("Roam returned %q, then %q: want one build per test binary", first, second)
	}
	if dir := filepath.Base(filepath.Dir(first)); !strings.HasPrefix(dir, fmt.Sprintf("roam-testbin-%d-", os.Getpid())) {
		t.Fatalf("binary in %q, want a directory named after this process (roam-testbin-%d-…)", dir, os.Getpid())
	}
	out, err := exec.Command(first, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", first, err, out)
	}
	if !regexp.MustCompile(`^roam \S+ go\S+ \w+/\w+\n$`).Match(out) {
		t.Fatalf("roam version printed %q, want \"roam VERSION GOVERSION OS/ARCH\"", out)
	}
}

func TestRoamUsesTheBinaryTheEnvironmentNames(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "roam")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho prebuilt\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBinary, bin)
	if got := Roam(t); got != bin {
		t.Fatalf("Roam with $%s=%s returned %q", EnvBinary, bin, got)
	}
}

func TestRoamRefusesAnUnusableEnvironmentBinary(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct{ path, want string }{
		"relative":       {"bin/roam", "not an absolute path"},
		"missing":        {filepath.Join(dir, "nope"), "no such file"},
		"directory":      {dir, "not an executable file"},
		"not executable": {plain, "not an executable file"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(EnvBinary, tt.path)
			msg := mustFail(t, func(tb testing.TB) { Roam(tb) })
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, EnvBinary) {
				t.Fatalf("Roam with $%s=%q failed with %q, want it to name $%s and say %q", EnvBinary, tt.path, msg, EnvBinary, tt.want)
			}
		})
	}
}

func TestRoamWithoutMainSaysWhatToAdd(t *testing.T) {
	mainRan.Store(false)
	defer mainRan.Store(true)
	msg := mustFail(t, func(tb testing.TB) { Roam(tb) })
	if !strings.Contains(msg, "func TestMain(m *testing.M) { testbin.Main(m) }") {
		t.Fatalf("Roam without Main failed with %q, want the TestMain to add", msg)
	}
}

func TestStartNodeServesAndIsKilledAtCleanup(t *testing.T) {
	var n *Node
	t.Run("node", func(t *testing.T) {
		n = StartNode(t, NodeOptions{})
		if n.ID != "n1" || n.Store != "memory" || !strings.HasPrefix(n.URL, "http://127.0.0.1:") || n.URL != "http://"+n.Addr {
			t.Fatalf("node %+v, want n1 with the memory store on http://127.0.0.1:PORT", n)
		}
		if n.PID != n.Process.PID() || n.PID <= 0 {
			t.Fatalf("PID %d, process %v", n.PID, n.Process)
		}
		resp, err := http.Get(n.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Roam-Node") != "n1" {
			t.Fatalf("GET /healthz = %d from %q, want 200 from n1", resp.StatusCode, resp.Header.Get("X-Roam-Node"))
		}
	})
	if n == nil {
		t.FailNow()
	}
	select {
	case <-n.Process.Exited():
	default:
		t.Fatalf("%s still running after its test's cleanup", n.Process)
	}
}

func TestStartNodePassesTheOptionsAsFlags(t *testing.T) {
	got := nodeArgs(NodeOptions{
		ID: "n2", Listen: "127.0.0.2:0", Store: "cluster:backup", ClusterBind: "127.0.0.2:7946",
		Join: []string{"127.0.0.1:7946", "127.0.0.3:7946"}, Args: []string{"--log-level", "warn"},
	})
	want := "node --id n2 --listen 127.0.0.2:0 --store cluster:backup --cluster-bind 127.0.0.2:7946 --join 127.0.0.1:7946,127.0.0.3:7946 --log-level warn"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("args %q, want %q", s, want)
	}
}

func TestStartNodeRunsACommandAsGivenAndPassesEnvAndOutput(t *testing.T) {
	stderr := NewLineWatcher(`level=INFO msg="node ready" node=web-1`)
	n := StartNode(t, NodeOptions{
		ID:      "web-1",
		Command: []string{"node", "--id", "web-1", "--listen", "127.0.0.1:0", "--log-format", "text"},
		Env:     []string{"TESTBIN_PROBE=from-the-options"},
		Stderr:  stderr,
	})
	if n.ID != "web-1" {
		t.Fatalf("node %q, want web-1", n.ID)
	}
	stderr.Await(t, n.Process, 10*time.Second)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", n.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(env), "\x00"), "TESTBIN_PROBE=from-the-options") {
		t.Fatal("the node's environment lacks NodeOptions.Env's TESTBIN_PROBE=from-the-options")
	}
}

func TestStartNodeFailsWithTheNodesOutput(t *testing.T) {
	t.Run("exits", func(t *testing.T) {
		msg := mustFail(t, func(tb testing.TB) { StartNode(tb, NodeOptions{Store: "floppy://a"}) })
		if !strings.Contains(msg, "exited") || !strings.Contains(msg, "unknown store spec") {
			t.Fatalf("StartNode of a node that cannot open its store failed with %q, want it to say it exited and quote why", msg)
		}
	})
	t.Run("other id", func(t *testing.T) {
		msg := mustFail(t, func(tb testing.TB) {
			StartNode(tb, NodeOptions{ID: "n1", Command: []string{"node", "--id", "n2", "--listen", "127.0.0.1:0"}})
		})
		if !strings.Contains(msg, `names node "n2", want "n1"`) {
			t.Fatalf("StartNode of a node with another id failed with %q", msg)
		}
	})
	t.Run("silent", func(t *testing.T) {
		// No process prints its ready line within a nanosecond of starting.
		msg := mustFail(t, func(tb testing.TB) { StartNode(tb, NodeOptions{ReadyTimeout: time.Nanosecond}) })
		if !strings.Contains(msg, "printed no line matching") {
			t.Fatalf("StartNode past its ready timeout failed with %q", msg)
		}
	})
}

func TestLineWatcherFindsALineSplitAcrossWrites(t *testing.T) {
	w := NewLineWatcher(`^ready on (\S+)$`)
	for _, chunk := range []string{"starting\nready on", " 127.0.0.1:1", "\nready on later\n"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	select {
	case m := <-w.found:
		if m[1] != "127.0.0.1:1" {
			t.Fatalf("submatch %q, want the first matching line's 127.0.0.1:1", m[1])
		}
	default:
		t.Fatal("no match for a line written in two pieces")
	}
	select {
	case m := <-w.found:
		t.Fatalf("a second match %q: want only the first", m)
	default:
	}
	w = NewLineWatcher(`^ready$`)
	w.Write([]byte("not ready\nready (no newline yet)"))
	select {
	case m := <-w.found:
		t.Fatalf("matched %q: want whole lines only", m)
	default:
	}
}
