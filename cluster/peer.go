package cluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
)

// Peer protocol paths, served on the replication listener.
const (
	pathPrefix = "/roam/v1/"
	pathWrites = "writes"
	// pathWriteStream carries batches of writes on one long-lived stream
	// (stream.go).
	pathWriteStream = "write-stream"
	pathForward     = "forward"
	pathFetch       = "fetch"
	pathPull        = "pull"
	pathHello       = "hello"
	pathQuery       = "query"
	pathPing        = "ping"

	headerNode = "Roam-Node"
)

// maxFrame bounds every frame a peer may send us.
const maxFrame = wire.DefaultMaxFrame

// errPeerAuth is returned by the TLS handshake for a peer that does not
// prove the cluster secret.
var errPeerAuth = errors.New("cluster: peer does not hold the cluster secret")

// deriveKey derives n bytes for purpose from the cluster secret
// (HKDF-SHA256), so the gossip key and the TLS key are independent.
func deriveKey(secret []byte, purpose string, n int) []byte {
	k, err := hkdf.Key(sha256.New, secret, []byte("roam-cluster"), "roam cluster "+purpose+" v1", n)
	if err != nil {
		panic("cluster: hkdf: " + err.Error()) // only for n > 255*32
	}
	return k
}

// peerTLS returns the server and client TLS configurations of a cluster
// with secret: every node presents the same Ed25519 key, derived from the
// secret, and accepts only a peer presenting it. TLS 1.3's CertificateVerify
// proves the peer holds the private key, so this is mutual authentication by
// the shared secret, with encryption and replay protection from TLS.
func peerTLS(secret []byte) (server, client *tls.Config, err error) {
	priv := ed25519.NewKeyFromSeed(deriveKey(secret, "peer tls", ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "roam cluster peer"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: peer certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errPeerAuth
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return errPeerAuth
		}
		if k, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !k.Equal(pub) {
			return errPeerAuth
		}
		return nil
	}
	server = &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
		NextProtos:            []string{"h2"},
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The chain is checked by verify against the pinned key instead:
		// there is no CA, only the shared secret.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
		NextProtos:            []string{"h2"},
	}
	return server, client, nil
}

// peerClient makes calls to other members over persistent HTTP/2
// connections (h2c without a secret, TLS with one).
type peerClient struct {
	s      *Store
	hc     *http.Client
	tr     *http.Transport
	scheme string
}

func newPeerClient(s *Store, clientTLS *tls.Config) *peerClient {
	dialer := &net.Dialer{Timeout: s.cfg.ReplicationTimeout / 2, KeepAlive: 15 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h := s.cfg.hooks; h != nil && h.blockPeer != nil && h.blockPeer(addr) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("blocked by test")}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		Protocols: new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			// Probe an idle connection so one to a peer that vanished
			// without a FIN is dropped, not reused.
			SendPingTimeout: 5 * time.Second,
			PingTimeout:     2 * time.Second,
		},
	}
	c := &peerClient{s: s, tr: tr, hc: &http.Client{Transport: tr}}
	if clientTLS != nil {
		tr.TLSClientConfig = clientTLS
		tr.ForceAttemptHTTP2 = true
		tr.Protocols.SetHTTP2(true)
		c.scheme = "https"
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
		c.scheme = "http"
	}
	return c
}

// callError is a failed peer call. unreachable means the call may be
// retried on another holder: the peer could not be reached or the
// connection broke (every peer operation is idempotent, so a retry after a
// write that did land is harmless). A timeout is not unreachable: the peer
// may only be paused, and it may still be serving the id.
type callError struct {
	peer, op    string
	unreachable bool
	timeout     bool
	err         error
}

func (e *callError) Error() string {
	return fmt.Sprintf("cluster: %s to peer %s: %v", e.op, e.peer, e.err)
}
func (e *callError) Unwrap() error { return e.err }

func isUnreachable(err error) bool {
	var ce *callError
	return errors.As(err, &ce) && ce.unreachable
}

func isTimeout(err error) bool {
	var ce *callError
	return errors.As(err, &ce) && ce.timeout
}

// do posts req to addr's op and returns the response body. ctx should carry
// the per-call deadline.
func (c *peerClient) do(ctx context.Context, addr, op string, req wire.Message) (io.ReadCloser, error) {
	body := wire.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+addr+pathPrefix+op, bytes.NewReader(body))
	if err != nil {
		return nil, &callError{peer: addr, op: op, err: err}
	}
	r.Header.Set("Content-Type", "application/x-roam-frame")
	r.Header.Set(headerNode, c.s.self)
	c.s.metrics.bytesSent.Add(float64(len(body)))
	res, err := c.hc.Do(r)
	if err != nil {
		ce := &callError{peer: addr, op: op, err: err}
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			ce.timeout = true
		} else if ctx.Err() == nil {
			ce.unreachable = true
		}
		return nil, ce
	}
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		ce := &callError{peer: addr, op: op, err: fmt.Errorf("HTTP %d: %s", res.StatusCode, strings.TrimSpace(string(msg)))}
		// A peer shutting down answers 503: try the next holder.
		ce.unreachable = res.StatusCode == http.StatusServiceUnavailable
		return nil, ce
	}
	return &countingBody{rc: res.Body, c: c}, nil
}

type countingBody struct {
	rc io.ReadCloser
	c  *peerClient
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.c.s.metrics.bytesRecv.Add(float64(n))
	return n, err
}
func (b *countingBody) Close() error { return b.rc.Close() }

// call makes a request with one answer frame, decoded into resp, within
// ReplicationTimeout (twice that for a forward, which includes the
// receiver's own replication).
func (c *peerClient) call(ctx context.Context, addr, op string, req, resp wire.Message) error {
	timeout := c.s.cfg.ReplicationTimeout
	if op == pathForward {
		timeout *= 2
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := c.do(ctx, addr, op, req)
	if err != nil {
		return err
	}
	defer body.Close()
	t, p, err := wire.ReadFrame(body, maxFrame)
	if err == nil {
		err = wire.Decode(t, p, resp)
	}
	if err != nil {
		ce := &callError{peer: addr, op: op, err: err}
		if ctx.Err() != nil {
			ce.timeout = true
		} else {
			var pe *wire.Error
			ce.unreachable = !errors.Is(err, wire.ErrCorrupt) && !errors.As(err, &pe)
		}
		return ce
	}
	return nil
}

// stream makes a request answered by a stream of frames closed by End. fn
// sees every frame but the End; the stream has no overall deadline (a
// transfer may take long), only ctx.
func (c *peerClient) stream(ctx context.Context, addr, op string, req wire.Message, fn func(t wire.Type, p []byte) error) (uint64, error) {
	body, err := c.do(ctx, addr, op, req)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	var n uint64
	for {
		t, p, err := wire.ReadFrame(body, maxFrame)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // a stream must end with End
			}
			return n, &callError{peer: addr, op: op, err: err, unreachable: !errors.Is(err, wire.ErrCorrupt)}
		}
		if t == wire.TypeEnd {
			var end wire.End
			if err := wire.Decode(t, p, &end); err != nil {
				return n, &callError{peer: addr, op: op, err: err}
			}
			return end.Count, nil
		}
		if err := fn(t, p); err != nil {
			return n, &callError{peer: addr, op: op, err: err}
		}
		n++
	}
}

// peerServer serves the peer protocol on the replication listener.
type peerServer struct {
	s   *Store
	ln  net.Listener
	srv *http.Server
}

func (s *Store) startPeerServer(ln net.Listener, serverTLS *tls.Config) *peerServer {
	ps := &peerServer{s: s, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathPrefix+"{op}", ps.handle)
	if h := s.cfg.hooks; h == nil || !h.noWriteStreams {
		mux.HandleFunc("POST "+pathPrefix+pathWriteStream, ps.serveWriteStream)
	}
	ps.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Protocols:         new(http.Protocols),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog:          nil,
	}
	serve := func() error { return ps.srv.Serve(ln) }
	if serverTLS != nil {
		ps.srv.TLSConfig = serverTLS
		ps.srv.Protocols.SetHTTP2(true)
		serve = func() error { return ps.srv.ServeTLS(ln, "", "") }
	} else {
		ps.srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("peer listener stopped", "error", err)
		}
	}()
	return ps
}

// handle decodes one request frame and dispatches it by path.
func (ps *peerServer) handle(w http.ResponseWriter, r *http.Request) {
	s := ps.s
	if s.closing.Load() {
		http.Error(w, "node shutting down", http.StatusServiceUnavailable)
		return
	}
	cr := &countingReader{r: http.MaxBytesReader(w, r.Body, maxFrame+wire.HeaderLen)}
	t, p, err := wire.ReadFrame(cr, maxFrame)
	s.metrics.bytesRecv.Add(float64(cr.n))
	if err != nil {
		http.Error(w, "bad frame: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.noticePeer(r.Header.Get(headerNode))
	out := &frameWriter{w: w, s: s}
	switch r.PathValue("op") {
	case pathPull, pathQuery:
		out.stream = true // flush each frame so a long answer flows
	}
	w.Header().Set("Content-Type", "application/x-roam-frame")
	ctx := r.Context()
	var herr error
	switch r.PathValue("op") {
	case pathWrites:
		var m wire.Writes
		if herr = wire.Decode(t, p, &m); herr == nil {
			out.send(s.serveWrites(&m))
		}
	case pathForward:
		var m wire.Forward
		if herr = wire.Decode(t, p, &m); herr == nil {
			out.send(s.serveForward(ctx, &m))
		}
	case pathFetch:
		var m wire.Fetch
		if herr = wire.Decode(t, p, &m); herr == nil {
			out.send(s.serveFetch(&m))
		}
	case pathPull:
		var m wire.Pull
		if herr = wire.Decode(t, p, &m); herr == nil {
			s.servePull(ctx, &m, out)
		}
	case pathHello:
		var m wire.Hello
		if herr = wire.Decode(t, p, &m); herr == nil {
			out.send(s.serveHello(&m))
		}
	case pathQuery:
		var m wire.Query
		if herr = wire.Decode(t, p, &m); herr == nil {
			s.serveQuery(ctx, &m, out)
		}
	case pathPing:
		var m wire.Ping
		if herr = wire.Decode(t, p, &m); herr == nil {
			out.send(&m)
		}
	default:
		http.NotFound(w, r)
		return
	}
	if herr != nil {
		http.Error(w, "bad message: "+herr.Error(), http.StatusBadRequest)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// frameWriter writes answer frames.
type frameWriter struct {
	w      http.ResponseWriter
	s      *Store
	buf    []byte
	err    error
	stream bool
}

func (f *frameWriter) send(m wire.Message) error {
	if f.err != nil {
		return f.err
	}
	f.buf = wire.Append(f.buf[:0], m)
	_, f.err = f.w.Write(f.buf)
	f.s.metrics.bytesSent.Add(float64(len(f.buf)))
	// A single answer goes out with the end of the handler, in one write
	// with the end of the stream; only streams flush as they go.
	if fl, ok := f.w.(http.Flusher); ok && f.err == nil && f.stream {
		fl.Flush()
	}
	return f.err
}

func (ps *peerServer) shutdown(ctx context.Context) error {
	err := ps.srv.Shutdown(ctx)
	if err != nil {
		ps.srv.Close()
	}
	return err
}
