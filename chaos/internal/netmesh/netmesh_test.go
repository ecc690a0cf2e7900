package netmesh

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func newMesh(t *testing.T, hosts int) *Mesh {
	t.Helper()
	m, err := New(context.Background(), Options{Hosts: hosts})
	if errors.Is(err, ErrUnavailable) {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("CI runs as root but: %v", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// serveHello listens inside host i and answers every connection with
// "hello from N".
func serveHello(t *testing.T, m *Mesh, i int) string {
	t.Helper()
	ln, err := m.Listen(i, "tcp", m.Addr(i).String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from "+m.Namespace(i))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// hello dials addr from inside host from and returns the greeting, with a
// deadline short enough to call a cut link silent.
func hello(m *Mesh, from int, addr string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := m.Dial(ctx, from, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestHostsReachEachOtherUntilCut(t *testing.T) {
	m := newMesh(t, 3)
	addr := serveHello(t, m, 0)
	want := "hello from " + m.Namespace(0)
	for _, from := range []int{1, 2} {
		if got, err := hello(m, from, addr, 5*time.Second); err != nil || got != want {
			t.Fatalf("host %d → host 0: %q, %v", from, got, err)
		}
	}
	if err := m.Cut(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	if !m.IsCut(1, 0) {
		t.Error("IsCut(1, 0) = false after Cut(0, 1)")
	}
	// A silent drop shows as a connect that times out, not one refused.
	if got, err := hello(m, 1, addr, 700*time.Millisecond); err == nil {
		t.Fatalf("host 1 reached host 0 over a cut link: %q", got)
	} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Errorf("over a cut link: %v; want a timeout (frames dropped, not refused)", err)
	}
	if got, err := hello(m, 2, addr, 5*time.Second); err != nil || got != want {
		t.Fatalf("host 2 → host 0 while 0–1 is cut: %q, %v", got, err)
	}
	if err := m.Mend(context.Background(), 1, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := hello(m, 1, addr, 5*time.Second); err != nil || got != want {
		t.Fatalf("host 1 → host 0 after Mend: %q, %v", got, err)
	}
}

func TestWrapRunsInsideTheHost(t *testing.T) {
	m := newMesh(t, 2)
	path, args := m.Wrap(1, m.ip, []string{"-br", "addr", "show", "dev", "lo"})
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", path, args, err, out)
	}
	if !strings.Contains(string(out), m.Addr(1).String()) {
		t.Fatalf("inside host 1, lo has %q; want %v", out, m.Addr(1))
	}
}

func TestCloseRemovesEveryNamespace(t *testing.T) {
	m := newMesh(t, 2)
	names := []string{m.Namespace(0), m.Namespace(1)}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(m.ip, "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s still listed after Close:\n%s", n, out)
		}
	}
	if err := m.Cut(context.Background(), 0, 1); err == nil {
		t.Error("Cut after Close succeeded")
	}
}

func TestThisProcessStaysInItsNamespace(t *testing.T) {
	m := newMesh(t, 2)
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	addr := serveHello(t, m, 0)
	for range 20 {
		if _, err := hello(m, 1, addr, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Sockets made by any goroutine must still be in the root namespace:
	// a thread that stayed switched would dial a host's own 127.0.0.1,
	// where nobody listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	errs := make(chan error, 50)
	for range cap(errs) {
		go func() {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatalf("a root-namespace dial after dialing into hosts: %v", err)
		}
	}
	if after, _ := os.Readlink("/proc/self/ns/net"); after != before {
		t.Fatalf("main thread's namespace %s became %s", before, after)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{Hosts: -1}, {Hosts: MaxHosts + 1}} {
		if _, err := New(context.Background(), o); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("New(%+v) = %v, want an options error", o, err)
		}
	}
}
