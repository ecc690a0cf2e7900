// Package faultproxy is a TCP proxy that can be told to misbehave: pass
// bytes through, hold them (a cut cable: nothing arrives, nothing is
// refused, connections hang until someone's timeout fires), or reset every
// connection. The chaos suite puts one in front of each node's HTTP port,
// so that a node can be cut off from the balancer while its process runs.
//
//	p, err := faultproxy.New(faultproxy.Options{Target: "127.0.0.1:9001"})
//	if err != nil { … }
//	defer p.Close()
//	p.SetMode(faultproxy.Blackhole) // the node's network is gone
//	p.SetMode(faultproxy.Pass)      // back; held bytes flow again
//
// A mode applies to new and established connections alike, as a network
// fault does: a blackhole stalls the bytes already in flight too, and a
// reset closes every open connection with RST.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how the proxy treats traffic.
type Mode int32

// The modes.
const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Blackhole accepts connections and reads what arrives, but forwards
	// nothing until the mode changes: senders see a peer that has gone
	// silent, not one that refuses. New connections are accepted and held
	// (the target is dialed once the blackhole ends).
	Blackhole
	// Reset closes every connection, open or new, with a TCP RST.
	Reset
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// ErrClosed is returned by SetMode after Close.
var ErrClosed = errors.New("faultproxy: closed")

// Options configures a Proxy. Target is required.
type Options struct {
	// Target is the host:port connections are forwarded to.
	Target string
	// Listen is the address to listen on; 127.0.0.1:0 (a free loopback
	// port) when empty.
	Listen string
	// Dial connects to Target; a net.Dialer with a 2 s timeout when nil.
	// The chaos suite dials into a node's network namespace with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives connection failures at debug level; discarded when
	// nil.
	Logger *slog.Logger
}

// Stats counts connections.
type Stats struct {
	// Accepted is every connection accepted so far.
	Accepted int64
	// Open is the connections open now, held ones included.
	Open int64
}

// Proxy is a running fault-injecting TCP proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	target string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	log    *slog.Logger
	ln     net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every mode change
	conns   map[*pair]struct{}
	closed  bool

	accepted, open atomic.Int64
}

// pair is one client connection and, once dialed, its upstream. client
// never changes; up is set once.
type pair struct {
	client net.Conn
	mu     sync.Mutex
	up     net.Conn
	closed bool
}

// New listens on opts.Listen and starts forwarding to opts.Target in
// Pass mode. It fails when Target is empty or the address cannot be
// listened on.
func New(opts Options) (*Proxy, error) {
	if opts.Target == "" {
		return nil, errors.New("faultproxy: Options.Target is empty")
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	dial := opts.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: 2 * time.Second}
		dial = d.DialContext
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: opts.Target, dial: dial, log: log, ln: ln,
		ctx: ctx, cancel: cancel,
		changed: make(chan struct{}),
		conns:   map[*pair]struct{}{},
	}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Stats returns the connection counts.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Open: p.open.Load()}
}

// SetMode switches the proxy to m, for open connections as well as new
// ones. Switching to Reset closes every open connection with RST. It
// returns ErrClosed after Close.
func (p *Proxy) SetMode(m Mode) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	var victims []*pair
	if m == Reset {
		for c := range p.conns {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
	return nil
}

// Close stops listening, closes every connection and returns once every
// goroutine of the proxy has ended. Later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

// state returns the mode and a channel closed at the next change.
func (p *Proxy) state() (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.changed
}

// waitPass blocks while the proxy holds traffic. It returns false when
// traffic must stop for good: the mode is Reset, or the proxy is closing.
func (p *Proxy) waitPass() bool {
	for {
		m, changed := p.state()
		switch m {
		case Pass:
			return true
		case Reset:
			return false
		}
		select {
		case <-changed:
		case <-p.ctx.Done():
			return false
		}
	}
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() == nil {
				p.log.Debug("faultproxy: accept", "error", err)
			}
			return
		}
		p.accepted.Add(1)
		pr := &pair{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[pr] = struct{}{}
		p.open.Add(1)
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(pr) })
	}
}

func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	if _, ok := p.conns[pr]; ok {
		delete(p.conns, pr)
		p.open.Add(-1)
	}
	p.mu.Unlock()
}

// serve forwards one connection until either side ends it or a fault
// does.
func (p *Proxy) serve(pr *pair) {
	defer p.forget(pr)
	defer pr.close()
	// A blackhole holds a new connection before the target sees it, as a
	// SYN lost on a cut link would leave the target unaware.
	if !p.waitPass() {
		pr.reset()
		return
	}
	up, err := p.dial(p.ctx, "tcp", p.target)
	if err != nil {
		p.log.Debug("faultproxy: dial target", "target", p.target, "error", err)
		pr.reset()
		return
	}
	if !pr.setUp(up) {
		up.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.copy(up, pr.client); done <- struct{}{} }()
	go func() { p.copy(pr.client, up); done <- struct{}{} }()
	<-done
	// One direction ended: end the other too rather than leave a
	// half-open pair behind.
	pr.close()
	<-done
}

// copy moves bytes from src to dst, holding each chunk while the proxy is
// in Blackhole mode and stopping on Reset.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Pass the half-close on, so request/response protocols
				// that shut down writing still get their answer.
				if tc, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}

// setUp records the upstream connection; false when the pair was closed
// meanwhile.
func (pr *pair) setUp(up net.Conn) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.closed {
		return false
	}
	pr.up = up
	return true
}

// reset closes both connections with RST (SO_LINGER 0).
func (pr *pair) reset() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.closed {
		return
	}
	for _, c := range []net.Conn{pr.client, pr.up} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	pr.closeLocked()
}

func (pr *pair) close() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.closeLocked()
}

func (pr *pair) closeLocked() {
	if pr.closed {
		return
	}
	pr.closed = true
	pr.client.Close()
	if pr.up != nil {
		pr.up.Close()
	}
}
