//go:build !linux

package netmesh

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// Options configures a Mesh (see the Linux build).
type Options struct {
	Hosts  int
	Subnet netip.Prefix
}

// Mesh is unavailable outside Linux.
type Mesh struct{}

// New fails with an error wrapping ErrUnavailable outside Linux.
func New(context.Context, Options) (*Mesh, error) {
	return nil, fmt.Errorf("%w: %s has no network namespaces", ErrUnavailable, runtime.GOOS)
}

func (*Mesh) Hosts() int                                                { return 0 }
func (*Mesh) Addr(int) netip.Addr                                       { return netip.Addr{} }
func (*Mesh) Namespace(int) string                                      { return "" }
func (*Mesh) Cut(context.Context, int, int) error                       { return ErrUnavailable }
func (*Mesh) Mend(context.Context, int, int) error                      { return ErrUnavailable }
func (*Mesh) IsCut(int, int) bool                                       { return false }
func (*Mesh) Close() error                                              { return nil }
func (*Mesh) Wrap(_ int, path string, args []string) (string, []string) { return path, args }
func (*Mesh) Dial(context.Context, int, string, string) (net.Conn, error) {
	return nil, ErrUnavailable
}
func (*Mesh) Listen(int, string, string) (net.Listener, error) { return nil, ErrUnavailable }
