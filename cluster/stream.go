package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
)

// Write streams. Sync replication sends its batches of writes to a peer on
// one long-lived HTTP/2 stream (a POST whose request and response bodies
// stay open, as a gRPC bidirectional stream does), a Writes frame up and a
// Results frame down, in lockstep. A request per batch would cost a new
// stream each time: HPACK-coded headers both ways, a handler goroutine on
// the peer, and on the client a flush for the headers and another for the
// body. On the stream a batch is one DATA frame each way.
//
// A stream carries one batch at a time, so its answers need no ids. Any
// failure (a timeout, a broken connection, a corrupt frame) ends the
// stream; the next batch opens a new one on the same connection. A peer
// that does not know the path (404, an older version during a rolling
// upgrade) gets each batch as a request of its own (pathWrites).

// writeStream is the client side of one write stream to a peer.
type writeStream struct {
	c      *peerClient
	addr   string
	pw     *io.PipeWriter
	cancel context.CancelFunc
	// opened delivers the peer's answer to the POST; body is its body
	// once the answer was 200.
	opened chan openResult
	body   io.ReadCloser
	buf    []byte
	// answered is set once the answer on opened was taken; closed once
	// the stream was closed.
	answered, closed bool
}

type openResult struct {
	res *http.Response
	err error
}

// errNoStreams means the peer does not serve write streams.
var errNoStreams = errors.New("cluster: peer serves no write streams")

// openWriteStream starts a write stream to addr; the peer's answer is
// taken by the first roundTrip. The stream's first frame goes out before
// that answer is awaited: a peer of an older version reads a frame before
// it answers 404 to a path it does not know.
func (c *peerClient) openWriteStream(addr string) *writeStream {
	ctx, cancel := context.WithCancel(c.s.bg)
	pr, pw := io.Pipe()
	ws := &writeStream{c: c, addr: addr, pw: pw, cancel: cancel, opened: make(chan openResult, 1)}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+addr+pathPrefix+pathWriteStream, pr)
	if err != nil {
		pr.CloseWithError(err)
		ws.opened <- openResult{err: err}
		return ws
	}
	r.Header.Set("Content-Type", "application/x-roam-frame")
	r.Header.Set(headerNode, c.s.self)
	go func() {
		res, err := c.hc.Do(r)
		ws.opened <- openResult{res, err}
	}()
	return ws
}

// roundTrip sends req and reads its answer into res within the call
// timeout. It returns errNoStreams when the peer serves no write streams
// (req was not applied: send it another way). After any error the stream
// is closed and must not be used again.
func (ws *writeStream) roundTrip(req *wire.Writes, res *wire.Results) error {
	c := ws.c
	var timedOut atomic.Bool
	t := time.AfterFunc(c.s.cfg.ReplicationTimeout, func() {
		timedOut.Store(true)
		ws.cancel() // aborts the POST: its body and answer fail at once
		ws.pw.CloseWithError(context.DeadlineExceeded)
	})
	defer t.Stop()
	ws.buf = wire.Append(ws.buf[:0], req)
	if len(ws.buf)-wire.HeaderLen > maxFrame {
		// The peer would refuse it and end the stream, which would look
		// like a broken connection; this is the sender's fault, and a
		// request of its own would have been answered 400 all the same.
		ws.close()
		return &callError{peer: ws.addr, op: pathWriteStream, err: fmt.Errorf("%w: batch of %d bytes", wire.ErrTooLarge, len(ws.buf))}
	}
	c.s.metrics.bytesSent.Add(float64(len(ws.buf)))
	_, err := ws.pw.Write(ws.buf)
	if ws.body == nil {
		// The first frame is out (or the POST failed, which closes the
		// pipe): now the peer's answer.
		o := <-ws.opened
		ws.answered = true
		switch {
		case o.err != nil:
			err = o.err
		case o.res.StatusCode == http.StatusNotFound:
			o.res.Body.Close()
			ws.close()
			return errNoStreams
		case o.res.StatusCode != http.StatusOK:
			msg, _ := io.ReadAll(io.LimitReader(o.res.Body, 512))
			o.res.Body.Close()
			ws.close()
			return &callError{peer: ws.addr, op: pathWriteStream, err: fmt.Errorf("HTTP %d: %s", o.res.StatusCode, msg),
				unreachable: o.res.StatusCode == http.StatusServiceUnavailable}
		default:
			c.s.metrics.streams.Inc()
			ws.body = &countingBody{rc: o.res.Body, c: c}
		}
	}
	var typ wire.Type
	var p []byte
	if err == nil {
		typ, p, err = wire.ReadFrame(ws.body, maxFrame)
		if err == io.EOF {
			// The peer ended the stream (it is stopping) before answering.
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil {
		err = wire.Decode(typ, p, res)
	}
	if err == nil {
		if !t.Stop() {
			// The timer fired as the answer came: the answer stands, the
			// stream is torn down (sendBatch sees closed).
			ws.close()
		}
		return nil
	}
	ws.close()
	ce := &callError{peer: ws.addr, op: pathWriteStream, err: err}
	var pe *wire.Error
	switch {
	case timedOut.Load():
		ce.timeout = true
	case c.s.bg.Err() != nil:
		return ErrClosed
	default:
		ce.unreachable = !errors.Is(err, wire.ErrCorrupt) && !errors.As(err, &pe)
	}
	return ce
}

// close ends the stream. The POST's goroutine finishes by itself: the
// cancelled context ends Do.
func (ws *writeStream) close() {
	if ws.closed {
		return
	}
	ws.closed = true
	ws.pw.Close() // first, so that the peer sees the stream end cleanly
	ws.cancel()
	if ws.body != nil {
		ws.body.Close()
	} else if !ws.answered {
		go func() {
			if o := <-ws.opened; o.err == nil {
				o.res.Body.Close()
			}
		}()
	}
}

// streamIdleTimeout is how long the peer side of a write stream waits for
// the next frame before it ends the stream.
const streamIdleTimeout = 2 * time.Minute

// serveWriteStream is the peer side: it answers every Writes frame of the
// stream with a Results frame until the sender ends the stream, the
// connection breaks, a frame is bad, or this node stops.
func (ps *peerServer) serveWriteStream(w http.ResponseWriter, r *http.Request) {
	s := ps.s
	if s.closing.Load() {
		http.Error(w, "node shutting down", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-roam-frame")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	// A stopping node ends its streams: the sender sees the end and treats
	// the peer as unreachable, as it would a 503.
	stop := context.AfterFunc(s.bg, func() { r.Body.Close() })
	defer stop()
	from := r.Header.Get(headerNode)
	var buf []byte
	for {
		// A stream nobody sends on, or a frame that never finishes, must
		// not hold a goroutine (and the frame's buffer) for ever; the
		// sender opens a new stream when it next has a batch.
		_ = rc.SetReadDeadline(time.Now().Add(streamIdleTimeout))
		t, p, err := wire.ReadFrame(r.Body, maxFrame)
		if err != nil {
			if errors.Is(err, wire.ErrCorrupt) || errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrVersion) {
				// The sender learns why; the stream ends.
				buf = wire.Append(buf[:0], &wire.Error{Msg: "bad frame: " + err.Error()})
				_, _ = w.Write(buf)
			} else if err != io.EOF && s.bg.Err() == nil {
				s.log.Debug("write stream ended", "peer", from, "error", err)
			}
			return
		}
		s.metrics.bytesRecv.Add(float64(wire.HeaderLen + len(p)))
		if s.closing.Load() {
			return
		}
		s.noticePeer(from)
		var m wire.Writes
		var out wire.Message
		if err := wire.Decode(t, p, &m); err != nil {
			// The sender learns why, then the stream ends: after a bad
			// frame nothing on it can be trusted.
			out = &wire.Error{Msg: "bad message: " + err.Error()}
		} else {
			out = s.serveWrites(&m)
		}
		buf = wire.Append(buf[:0], out)
		s.metrics.bytesSent.Add(float64(len(buf)))
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if _, bad := out.(*wire.Error); bad {
			return
		}
	}
}
