package lb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// upstream is the balancer's own HTTP/1.1 client for the common request:
// an idempotent method (GET, HEAD, …), no request body, no protocol
// upgrade, a plain-http backend. Everything else (POST, bodies,
// WebSockets, https backends) goes through net/http's Transport.
//
// Why a second client: profiling roam lb under wrk showed net/http's
// Transport spending most of its time outside the proxy's own work: each
// request is handed from the handler goroutine to a per-connection write
// goroutine and back from a read goroutine, and the read goroutine issues
// one more read per request just to learn that the connection is idle.
// Here the handler goroutine writes the request and reads the response on
// the connection itself, which roughly halves the balancer's CPU per
// request. The parsing is still net/http's (http.ReadResponse), so
// chunked bodies, trailers, Connection: close and HEAD are handled as
// the standard library handles them.
type upstream struct {
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration
	respTimeout time.Duration
	maxHeader   int64
}

func newUpstream(c *Config) *upstream {
	return &upstream{
		dialer:      net.Dialer{Timeout: c.Timeouts.Connect.D(), KeepAlive: 30 * time.Second},
		maxIdle:     c.Pool.MaxIdlePerBackend,
		idleTimeout: c.Pool.IdleTimeout.D(),
		respTimeout: c.Timeouts.Backend.D(),
		maxHeader:   1 << 20,
	}
}

// errNotSent marks a failure before the backend could have received the
// whole request, so the request may go to another backend whatever its
// method.
var errNotSent = errors.New("lb: request not sent")

// connPool holds a backend's idle keep-alive connections, most recently
// used first out (so that surplus connections age and are closed).
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

type upConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	pool   *connPool
	used   int64 // unix nanoseconds when it went idle
	nread  int64 // bytes read from c, to tell "nothing came back"
	limit  int64 // while reading headers: max bytes; 0 = none
	broken bool
}

func (uc *upConn) Read(p []byte) (int, error) {
	if uc.limit > 0 && uc.nread >= uc.limit {
		return 0, errors.New("lb: backend response headers too large")
	}
	n, err := uc.c.Read(p)
	uc.nread += int64(n)
	return n, err
}

func (uc *upConn) close() {
	uc.broken = true
	uc.c.Close()
}

func (p *connPool) get(now int64, idleTimeout time.Duration) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if idleTimeout > 0 && now-uc.used > int64(idleTimeout) {
			uc.c.Close()
			continue
		}
		return uc
	}
	return nil
}

func (p *connPool) put(uc *upConn, max int) {
	uc.used = nowNano()
	p.mu.Lock()
	if p.closed || len(p.idle) >= max {
		p.mu.Unlock()
		uc.c.Close()
		return
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
}

// reap closes connections idle longer than idleTimeout.
func (p *connPool) reap(idleTimeout time.Duration) {
	if idleTimeout <= 0 {
		return
	}
	cutoff := nowNano() - int64(idleTimeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.idle[:0]
	for _, uc := range p.idle {
		if uc.used < cutoff {
			uc.c.Close()
		} else {
			keep = append(keep, uc)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
}

// closeAll closes the idle connections; with forever, the pool also stops
// taking connections back (the backend was removed).
func (p *connPool) closeAll(forever bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, uc := range p.idle {
		uc.c.Close()
	}
	clear(p.idle)
	p.idle = p.idle[:0]
	if forever {
		p.closed = true
	}
}

// roundTrip sends req, an idempotent request without a body, to b and
// returns the response with its headers read; the body streams from the
// connection, which goes back to the pool when the body has been read to
// its end and closed. A stale keep-alive connection (the backend closed it
// while idle: nothing comes back) makes the pool drop its other idle
// connections, likely as stale, and the request is sent once more on a
// fresh connection. Errors: dial failures and failures to write on a fresh
// connection wrap errNotSent; os.ErrDeadlineExceeded when the backend
// timeout passed; anything else means the request may have been received.
func (u *upstream) roundTrip(ctx context.Context, req *http.Request, b *Backend) (*http.Response, error) {
	for try := 0; ; try++ {
		uc := b.conns.get(nowNano(), u.idleTimeout)
		reused := uc != nil
		if uc == nil {
			c, err := u.dialer.DialContext(ctx, "tcp", b.host)
			if err != nil {
				return nil, err
			}
			uc = &upConn{c: c, pool: &b.conns}
			uc.br = bufio.NewReaderSize(uc, 16<<10)
			uc.bw = bufio.NewWriterSize(c, 4<<10)
		}
		// The client going away must unblock a read from a slow backend.
		stop := context.AfterFunc(ctx, func() { uc.c.SetDeadline(aLongTimeAgo) })
		if err := writeRequest(uc.bw, req, b); err != nil {
			stop()
			uc.close()
			if reused && try == 0 {
				b.conns.closeAll(false)
				continue
			}
			return nil, fmt.Errorf("%w: %v", errNotSent, err)
		}
		if u.respTimeout > 0 {
			uc.c.SetReadDeadline(time.Now().Add(u.respTimeout))
		}
		before := uc.nread
		uc.limit = before + u.maxHeader
		resp, err := http.ReadResponse(uc.br, req)
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// 1xx informational answers (103 Early Hints) are dropped.
			resp, err = http.ReadResponse(uc.br, req)
		}
		uc.limit = 0
		if err != nil {
			stop()
			uc.close()
			nothingBack := uc.nread == before
			if reused && try == 0 && nothingBack {
				b.conns.closeAll(false)
				continue
			}
			if nothingBack && !reused && errors.Is(err, syscall.ECONNREFUSED) {
				return nil, fmt.Errorf("%w: %v", errNotSent, err)
			}
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// Not asked for on this path; never reuse the connection.
			stop()
			uc.close()
			return nil, errors.New("lb: backend switched protocols unasked")
		}
		if u.respTimeout > 0 {
			uc.c.SetReadDeadline(time.Time{})
		}
		resp.Body = &upBody{rc: resp.Body, uc: uc, stop: stop, keep: !resp.Close, max: u.maxIdle}
		return resp, nil
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// upBody returns the connection to its pool when the body was read to
// the end; any other close discards the connection (draining an unknown
// remainder, possibly an endless stream, is not worth it).
type upBody struct {
	rc   io.ReadCloser
	uc   *upConn
	stop func() bool
	eof  bool
	keep bool
	max  int
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *upBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	notFired := b.stop()
	if b.eof {
		b.rc.Close()
	}
	if b.eof && b.keep && notFired && !b.uc.broken && b.uc.br.Buffered() == 0 {
		b.uc.pool.put(b.uc, b.max)
	} else {
		b.uc.c.Close()
	}
	return nil
}

// writeRequest writes req's request line and headers in HTTP/1.1 form
// and flushes them. The headers were parsed (and so validated) by the
// server or set by the balancer; hop-by-hop headers are already gone.
func writeRequest(w *bufio.Writer, req *http.Request, b *Backend) error {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(b.prefix)
	if uri := req.RequestURI; uri != "" && (uri[0] == '/' || uri == "*") {
		w.WriteString(uri)
	} else if req.URL.Opaque == "" && (req.URL.Path == "" || req.URL.Path[0] == '/') {
		w.WriteString(req.URL.RequestURI())
	} else {
		w.WriteString("/")
		w.WriteString(req.URL.RequestURI())
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	if req.Host != "" {
		w.WriteString(req.Host)
	} else {
		w.WriteString(b.host)
	}
	w.WriteString("\r\n")
	for k, vv := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if req.Method == http.MethodPut {
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	return w.Flush()
}
