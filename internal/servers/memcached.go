package servers

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

	"github.com/roamsession/roam/internal/proc"
)

// MemcachedOptions configures StartMemcached. The zero value is a 64 MiB
// server on 127.0.0.1.
type MemcachedOptions struct {
	// Binary is memcached's path; looked up when empty.
	Binary string
	// Host is the loopback address to listen on; 127.0.0.1 when empty.
	Host string
	// MemoryMB is the cache size (-m); 64 when zero.
	MemoryMB int
	// Args are extra memcached flags, such as "-I", "2m".
	Args []string
}

// Memcached is a running memcached. It keeps nothing across Kill, Stop or
// Restart: a restarted server is empty.
type Memcached struct {
	Addr string // host:port
	Host string
	Port int

	*Instance
}

// StartMemcached starts a memcached on a free port, registered with c, and
// returns once it answers the version command. It fails with a
// *NotInstalledError when memcached is missing.
func StartMemcached(c Cleaner, o MemcachedOptions) (*Memcached, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = need("memcached", "memcached"); err != nil {
			return nil, err
		}
	}
	host := loopbackHost(o.Host)
	mem := o.MemoryMB
	if mem <= 0 {
		mem = 64
	}
	var s *Memcached
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
		in := &Instance{
			name:         "memcached " + addr,
			spec:         proc.Spec{Name: "memcached", Path: bin, Args: args},
			ready:        func(ctx context.Context) error { return memcachedVersion(ctx, addr) },
			startTimeout: fastStartTimeout,
		}
		if err := in.start(); err != nil {
			return err
		}
		s = &Memcached{Addr: addr, Host: host, Port: port, Instance: in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.register(c)
	return s, nil
}

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
