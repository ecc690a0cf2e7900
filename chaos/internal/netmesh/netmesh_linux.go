package netmesh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// namePrefix starts the name of every namespace netmesh creates; the PID
// of the creating process follows, so that leftovers of a crashed run can
// be told from live meshes and removed.
const namePrefix = "roamchaos-"

// MaxHosts bounds Options.Hosts: every pair of hosts gets a veth pair.
const MaxHosts = 16

// cmdTimeout bounds one ip command.
const cmdTimeout = 10 * time.Second

// Options configures a Mesh. The zero value makes three hosts.
type Options struct {
	// Hosts is how many hosts to make; 3 when zero, at most MaxHosts.
	Hosts int
	// Subnet holds the hosts' addresses: host i gets the subnet's address
	// i+1. 10.77.0.0/24 when invalid; it must be private (RFC 1918) and
	// hold Hosts addresses.
	Subnet netip.Prefix
}

// Mesh is a set of hosts, each in its own network namespace, linked two
// by two. Its methods are safe for concurrent use.
type Mesh struct {
	ip    string
	names []string
	addrs []netip.Addr

	mu     sync.Mutex
	cut    map[[2]int]bool
	closed bool
}

var meshSeq atomic.Int64

// New makes opts.Hosts namespaces and links each pair. It first removes
// namespaces left behind by earlier netmesh processes that no longer run.
// On failure it removes whatever it made. It fails with an error wrapping
// ErrUnavailable when the process is not root or ip is missing, and with
// the failing command's output otherwise.
func New(ctx context.Context, opts Options) (*Mesh, error) {
	n := opts.Hosts
	if n == 0 {
		n = 3
	}
	if n < 1 || n > MaxHosts {
		return nil, fmt.Errorf("netmesh: %d hosts: want 1 to %d", n, MaxHosts)
	}
	subnet := opts.Subnet
	if !subnet.IsValid() {
		subnet = netip.MustParsePrefix("10.77.0.0/24")
	}
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || !subnet.Addr().IsPrivate() || subnet.Bits() > 32-5 {
		return nil, fmt.Errorf("netmesh: subnet %v: want a private IPv4 prefix of /27 or wider", subnet)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrUnavailable)
	}
	ip, err := findIP()
	if err != nil {
		return nil, err
	}
	m := &Mesh{ip: ip, cut: map[[2]int]bool{}}
	removeStale(ctx, ip)
	seq := meshSeq.Add(1)
	a := subnet.Addr()
	for i := range n {
		a = a.Next()
		m.names = append(m.names, fmt.Sprintf("%s%d-%d-%d", namePrefix, os.Getpid(), seq, i+1))
		m.addrs = append(m.addrs, a)
	}
	if err := m.build(ctx); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

func findIP() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no ip command (install iproute2)", ErrUnavailable)
}

// removeStale deletes namespaces named by a netmesh process that is gone.
// Failures are ignored: a leftover does not stop a new mesh.
func removeStale(ctx context.Context, ip string) {
	out, err := run(ctx, ip, "netns", "list")
	if err != nil {
		return
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		rest, ok := strings.CutPrefix(name, namePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_, _ = run(ctx, ip, "netns", "del", name)
		}
	}
}

// mac returns the address of the veth end in host i that leads to host
// j, or, when bogus, the address nobody has that a cut points i's
// neighbour entry at.
func mac(i, j int, bogus bool) string {
	kind := 0x77
	if bogus {
		kind = 0xde
	}
	return fmt.Sprintf("02:%02x:00:00:%02x:%02x", kind, i+1, j+1)
}

// ifname is the name, in host i, of the link to host j.
func ifname(j int) string { return "to" + strconv.Itoa(j+1) }

func (m *Mesh) build(ctx context.Context) error {
	for i, name := range m.names {
		if err := m.ipcmd(ctx, "netns", "add", name); err != nil {
			return err
		}
		if err := m.ipcmd(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
			return err
		}
		if err := m.ipcmd(ctx, "-n", name, "addr", "add", m.addrs[i].String()+"/32", "dev", "lo"); err != nil {
			return err
		}
	}
	for i := range m.names {
		for j := i + 1; j < len(m.names); j++ {
			if err := m.link(ctx, i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// link makes the veth pair between hosts i and j, with a route and a
// permanent neighbour entry on each side (no ARP: Cut owns the entries).
func (m *Mesh) link(ctx context.Context, i, j int) error {
	ni, nj := m.names[i], m.names[j]
	cmds := [][]string{
		{"-n", ni, "link", "add", ifname(j), "address", mac(i, j, false), "type", "veth",
			"peer", "name", ifname(i), "address", mac(j, i, false), "netns", nj},
		{"-n", ni, "link", "set", ifname(j), "up"},
		{"-n", nj, "link", "set", ifname(i), "up"},
		{"-n", ni, "route", "add", m.addrs[j].String() + "/32", "dev", ifname(j), "src", m.addrs[i].String()},
		{"-n", nj, "route", "add", m.addrs[i].String() + "/32", "dev", ifname(i), "src", m.addrs[j].String()},
	}
	for _, c := range cmds {
		if err := m.ipcmd(ctx, c...); err != nil {
			return err
		}
	}
	return m.setNeighbours(ctx, i, j, false)
}

func (m *Mesh) setNeighbours(ctx context.Context, i, j int, bogus bool) error {
	return errors.Join(
		m.ipcmd(ctx, "-n", m.names[i], "neigh", "replace", m.addrs[j].String(),
			"lladdr", mac(j, i, bogus), "dev", ifname(j), "nud", "permanent"),
		m.ipcmd(ctx, "-n", m.names[j], "neigh", "replace", m.addrs[i].String(),
			"lladdr", mac(i, j, bogus), "dev", ifname(i), "nud", "permanent"),
	)
}

func (m *Mesh) ipcmd(ctx context.Context, args ...string) error {
	_, err := run(ctx, m.ip, args...)
	return err
}

func run(ctx context.Context, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("netmesh: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Hosts returns the number of hosts.
func (m *Mesh) Hosts() int { return len(m.names) }

// Addr returns host i's address.
func (m *Mesh) Addr(i int) netip.Addr { return m.addrs[i] }

// Namespace returns host i's namespace name, as `ip netns` knows it.
func (m *Mesh) Namespace(i int) string { return m.names[i] }

// Wrap returns the command line that runs path with args inside host i:
// ip netns exec, which execs path in place, so the process id a caller
// gets is the program's own and signals reach it directly.
func (m *Mesh) Wrap(i int, path string, args []string) (string, []string) {
	return m.ip, append([]string{"netns", "exec", m.names[i], path}, args...)
}

func (m *Mesh) check(i, j int) error {
	if i < 0 || j < 0 || i >= len(m.names) || j >= len(m.names) || i == j {
		return fmt.Errorf("netmesh: no link between hosts %d and %d", i, j)
	}
	return nil
}

// Cut makes the link between hosts i and j drop every frame, both ways,
// silently: connects time out, established connections stall, datagrams
// vanish. It fails for a pair that is not a link or when ip fails.
func (m *Mesh) Cut(ctx context.Context, i, j int) error {
	return m.setCut(ctx, i, j, true)
}

// Mend restores the link between hosts i and j; stalled connections
// resume as TCP retransmits.
func (m *Mesh) Mend(ctx context.Context, i, j int) error {
	return m.setCut(ctx, i, j, false)
}

func (m *Mesh) setCut(ctx context.Context, i, j int, cut bool) error {
	if err := m.check(i, j); err != nil {
		return err
	}
	if i > j {
		i, j = j, i
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("netmesh: closed")
	}
	if err := m.setNeighbours(ctx, i, j, cut); err != nil {
		return err
	}
	m.cut[[2]int{i, j}] = cut
	return nil
}

// IsCut reports whether the link between hosts i and j is cut.
func (m *Mesh) IsCut(i, j int) bool {
	if i > j {
		i, j = j, i
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cut[[2]int{i, j}]
}

// Dial connects from inside host i to addr (an IP literal and port; no
// name is resolved). The socket is made in host i's namespace and is an
// ordinary connection of this process from then on.
func (m *Mesh) Dial(ctx context.Context, i int, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := m.inside(i, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens inside host i on addr.
func (m *Mesh) Listen(i int, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := m.inside(i, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// inside runs fn on an OS thread switched into host i's namespace, then
// switches the thread back. Sockets fn makes belong to host i for good.
// fn must make its sockets on the calling goroutine (no name lookups,
// which may run elsewhere).
func (m *Mesh) inside(i int, fn func() error) error {
	if i < 0 || i >= len(m.names) {
		return fmt.Errorf("netmesh: no host %d", i)
	}
	errc := make(chan error, 1)
	// A goroutine of its own: if the switch back fails, its thread must
	// die with it (a locked goroutine that exits takes its thread along)
	// rather than carry the wrong namespace into other goroutines.
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netmesh: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + m.names[i])
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netmesh: host %d: %w", i, err)
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netmesh: enter host %d: %w", i, err)
			return
		}
		fnErr := fn()
		if err := setns(self); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("netmesh: leave host %d: %w", i, err))
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// Close removes every namespace of the mesh, and with them their veth
// pairs. Processes still running inside keep their namespace until they
// exit; callers stop them first. Later calls return nil.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	ctx := context.Background()
	var errs []error
	for _, name := range m.names {
		if _, err := os.Stat("/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
			continue // never made: New failed before it
		}
		if err := m.ipcmd(ctx, "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
