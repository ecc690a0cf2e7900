package testserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/roamsession/roam/internal/proc"
)

// MemcachedOptions configures Memcached. The zero value is a 64 MiB server
// on 127.0.0.1.
type MemcachedOptions struct {
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// MemoryMB is the cache size (-m); 64 when zero.
	MemoryMB int
	// Args are extra memcached flags, such as "-I", "2m".
	Args []string
}

// MemcachedServer is a running memcached owned by one test. Its methods fail
// the test on error and must be called from the test's goroutine.
type MemcachedServer struct {
	Addr string // host:port
	Host string
	Port int

	t  testing.TB
	in *instance
}

// Memcached starts a memcached on a free port, waits until it answers the
// version command, and stops it when the test ends. It skips the test
// (fails it under CI) when memcached is not installed.
func Memcached(t testing.TB, opts ...MemcachedOptions) *MemcachedServer {
	t.Helper()
	o := oneOption(t, opts)
	bin := Require(t, "memcached", "memcached")
	s, err := startMemcached(t, bin, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.t = t
	return s
}

// MemcachedN starts n independent memcached servers, for clients that shard
// keys over several.
func MemcachedN(t testing.TB, n int, opts ...MemcachedOptions) []*MemcachedServer {
	t.Helper()
	servers := make([]*MemcachedServer, n)
	for i := range servers {
		servers[i] = Memcached(t, opts...)
	}
	return servers
}

func startMemcached(c cleaner, bin string, o MemcachedOptions) (*MemcachedServer, error) {
	host := loopbackHost(o.Host)
	mem := o.MemoryMB
	if mem <= 0 {
		mem = 64
	}
	var s *MemcachedServer
	err := withPortRetry(func() error {
		port, err := proc.FreePort(host)
		if err != nil {
			return err
		}
		args := []string{"-l", host, "-p", strconv.Itoa(port), "-U", "0", "-m", strconv.Itoa(mem), "-t", "2"}
		// memcached refuses to run as root unless told which user to be;
		// naming root itself keeps it as it is.
		if os.Geteuid() == 0 {
			name := "root"
			if u, err := user.Current(); err == nil {
				name = u.Username
			}
			args = append(args, "-u", name)
		}
		args = append(args, o.Args...)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		in := &instance{
			name:         "memcached " + addr,
			spec:         proc.Spec{Name: "memcached", Path: bin, Args: args},
			ready:        func(ctx context.Context) error { return memcachedVersion(ctx, addr) },
			startTimeout: fastStartTimeout,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &MemcachedServer{Addr: addr, Host: host, Port: port, in: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.in.register(c)
	return s, nil
}

// Kill sends SIGKILL to the server. Its contents are gone.
func (s *MemcachedServer) Kill() {
	s.t.Helper()
	if err := s.in.kill(); err != nil {
		s.t.Fatalf("testserver: kill %s: %v", s.Addr, err)
	}
}

// Stop shuts the server down with SIGTERM. Memcached keeps nothing, so its
// contents are gone too.
func (s *MemcachedServer) Stop() {
	s.t.Helper()
	if err := s.in.stop(); err != nil {
		s.t.Fatalf("testserver: stop %s: %v", s.Addr, err)
	}
}

// Restart stops the server if it is running and starts an empty one on the
// same port, waiting until it answers.
func (s *MemcachedServer) Restart() {
	s.t.Helper()
	if err := s.in.restart(); err != nil {
		s.t.Fatalf("testserver: restart %s: %v", s.Addr, err)
	}
}

// Running reports whether the server process is alive.
func (s *MemcachedServer) Running() bool { return s.in.running() }

// Proc returns the current server process, for Freeze and Thaw.
func (s *MemcachedServer) Proc() *proc.Process { return s.in.current() }

// memcachedVersion sends the text protocol's version command and expects
// "VERSION …".
func memcachedVersion(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, respTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, "version\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("memcached: version answered %q", strings.TrimSpace(line))
	}
	return nil
}
