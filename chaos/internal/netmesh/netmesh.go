// Package netmesh gives each node of a test cluster a network host of its
// own: one Linux network namespace per host, with its own address on its
// own loopback, and a veth pair between every two hosts. A partition is
// then a real one: Cut makes the link between two hosts drop every frame
// silently, UDP and TCP alike, the way a pulled cable does, and Mend puts
// it back.
//
//	m, err := netmesh.New(ctx, netmesh.Options{Hosts: 3})
//	if err != nil { … }          // not root, or no iproute2: callers skip partitions
//	defer m.Close()
//	path, args := m.Wrap(0, "/path/to/roam", []string{"node", …}) // runs inside host 0
//	m.Cut(0, 1)                  // hosts 0 and 1 no longer hear each other
//	m.Mend(0, 1)
//	c, err := m.Dial(ctx, 0, "tcp", "10.77.0.1:9000") // from this process, into host 0
//
// Everything lives inside the namespaces netmesh creates: the root
// namespace gets no interface, address or route, and the addresses
// (Options.Subnet, 10.77.0.0/24 by default) never reach another machine.
// The kernel in the machines the suite runs on has no netem or tc
// classifiers, so a cut is made with the neighbour table: each side's
// permanent entry for the other is pointed at a MAC address nobody has,
// and the receiving veth discards frames that are not addressed to it.
//
// It needs root and the ip command (Debian's iproute2); New fails with an
// error wrapping ErrUnavailable otherwise.
package netmesh

import "errors"

// ErrUnavailable is returned (wrapped) by New where network namespaces
// cannot be made: not Linux, not root, or no ip command.
var ErrUnavailable = errors.New("netmesh: network namespaces unavailable")
