package proc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// FreePort returns a TCP port on host that was free a moment ago. host must
// be a loopback address such as 127.0.0.1 or 127.0.0.2 (every 127.0.0.0/8
// address works on Linux), "localhost" or ::1; "" means 127.0.0.1.
//
// It binds port 0, reads the port the kernel chose, and closes the
// listener, so there is a small race: another process may take the port
// before the caller's server binds it. Callers that start a server on the
// port should treat "address already in use" at startup as a reason to pick
// a new port and try again (internal/testserver does, three times).
func FreePort(host string) (int, error) {
	ports, err := FreePorts(host, 1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreeAddr is FreePort returning "host:port", ready for a server's listen
// flag. The same race applies.
func FreeAddr(host string) (string, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := FreePort(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// FreePorts returns n distinct free ports on host, holding all n listeners
// open until every port is chosen so the kernel cannot hand out one twice.
// The race described at FreePort applies to each.
func FreePorts(host string, n int) ([]int, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	if err := checkLoopback(host); err != nil {
		return nil, err
	}
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("proc: free port on %s: %w", host, err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ErrNotLoopback is returned by FreePort, FreeAddr and FreePorts for a host
// outside the loopback range: servers started for tests and demos listen
// only where nothing else on the network can reach them.
var ErrNotLoopback = errors.New("proc: host is not a loopback address")

func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, host)
	}
	return nil
}
