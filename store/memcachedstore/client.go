package memcachedstore

import (
	"errors"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// DefaultTimeout is the ClientOptions.Timeout used when it is zero.
//
// A memcached round trip on a LAN takes well under a millisecond, so 200 ms
// (more than a hundred times that) is only ever reached by a server that is
// gone or hung. gomemcache's own default is 500 ms; shorter means a request
// for a session on a dead server answers 503 sooner instead of holding a
// handler goroutine, and a read-modify-write that times out mid-way is
// retried by the user's next click rather than after half a second of
// waiting on every step.
const DefaultTimeout = 200 * time.Millisecond

// DefaultMaxIdleConns is the ClientOptions.MaxIdleConns used when it is
// zero. gomemcache keeps 2 idle connections per server by default; under
// more concurrent requests than that it dials and closes a TCP connection
// per request. Raise it to about the peak number of concurrent session
// reads per application server (memcached accepts 1024 connections by
// default, shared by every application server).
const DefaultMaxIdleConns = 32

// ClientOptions configures NewClient. The zero value uses the defaults
// above.
type ClientOptions struct {
	// Timeout bounds each network step of a request: the dial, and each
	// read and write on the connection. Zero means DefaultTimeout.
	Timeout time.Duration

	// MaxIdleConns is how many idle connections are kept per server. Zero
	// means DefaultMaxIdleConns.
	MaxIdleConns int
}

// NewClient returns a gomemcache client over servers that places keys with
// a rendezvous Selector, so that removing one server moves only its own
// keys. The Selector is returned too, for changing the server list at run
// time. No connection is made until the first request; use Client.Ping to
// check the servers. It returns an error when servers is empty or a server
// name is invalid (see Selector.SetServers).
//
// The caller owns the client and closes it (Client.Close) when done; a
// Store built on it does not.
func NewClient(servers []string, o ClientOptions) (*memcache.Client, *Selector, error) {
	if len(servers) == 0 {
		return nil, nil, errors.New("memcachedstore: no servers")
	}
	if o.Timeout < 0 || o.MaxIdleConns < 0 {
		return nil, nil, errors.New("memcachedstore: ClientOptions.Timeout and MaxIdleConns must not be negative")
	}
	sel, err := NewSelector(servers...)
	if err != nil {
		return nil, nil, err
	}
	c := memcache.NewFromSelector(sel)
	c.Timeout = o.Timeout
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.MaxIdleConns = o.MaxIdleConns
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = DefaultMaxIdleConns
	}
	return c, sel, nil
}
