package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// reqState is the per-request memo shared by the proxy loop and the
// policies: what was tried, the client address, and what a policy learnt
// on the first attempt (the verified cookie, the hash key) so a retry does
// not compute it again. It is pooled: the hot path allocates none.
type reqState struct {
	tried    []*Backend
	triedBuf [4]*Backend
	forced   *Backend // next backend chosen when a 502/503 was retried

	clientIP       string
	forwardedHTTPS bool

	cookieRead   bool
	breakCounted bool
	pinned       *Backend
	pinnedIssued int64

	hashKey string
	home    *Backend
	moved   bool
}

var reqStatePool = sync.Pool{New: func() any { return new(reqState) }}

func getReqState() *reqState {
	rs := reqStatePool.Get().(*reqState)
	*rs = reqState{}
	rs.tried = rs.triedBuf[:0]
	return rs
}

func putReqState(rs *reqState) {
	*rs = reqState{} // drop references to backends and header strings
	reqStatePool.Put(rs)
}

// trackedBody lets a request body be offered to a second backend after a
// connect failure: Close is deferred to the proxy, and reads are counted
// so that a body a backend may have started to consume is never replayed.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Int64
}

func (t *trackedBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.read.Add(int64(n))
	return n, err
}

func (t *trackedBody) Close() error { return nil }

// ServeHTTP proxies one request: pick a backend by the policy, forward the
// request, retry another backend when the first could not be reached (see
// Config.Retries for exactly when), and stream the response back. It
// answers 503 when no backend is available, 502 when every attempt failed,
// 504 when a backend timed out, 413 for an oversized body.
func (l *LB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := l.rt.Load()
	cfg := rt.cfg
	start := time.Now()
	now := start.UnixNano()
	rs := getReqState()
	defer putReqState(rs)

	if max := cfg.Limits.MaxBodyBytes; max > 0 && r.ContentLength > max {
		l.fail(w, http.StatusRequestEntityTooLarge, "body_too_large")
		return
	}
	// net/http accepts an absolute target without "//" ("POST mailto:x")
	// as an opaque URL, which its Transport would forward mangled. No
	// backend of a web app wants one: answer it here.
	if r.URL.Opaque != "" || (r.URL.Path != "" && r.URL.Path[0] != '/' && !(r.Method == http.MethodOptions && r.URL.Path == "*")) {
		l.fail(w, http.StatusBadRequest, "bad_target")
		return
	}
	peer, trusted := rt.peer(r)
	rs.clientIP = peer
	if trusted {
		rs.clientIP = rt.forwardedClient(r.Header, peer)
	}
	upgrade := upgradeType(r.Header)
	prepareRequestHeaders(r, peer, trusted, upgrade, rs)

	var body *trackedBody
	if !(r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0)) {
		rc := r.Body
		if max := cfg.Limits.MaxBodyBytes; max > 0 {
			rc = http.MaxBytesReader(w, rc, max)
		}
		body = &trackedBody{rc: rc}
		defer rc.Close()
	}
	// out is the request for net/http's Transport, made on first use: the
	// fast path writes r itself.
	var out *http.Request
	idempotent := isIdempotent(r.Method)
	maxRetries := cfg.Retries.Max
	l.budget.deposit()

	for attempt := 0; ; attempt++ {
		pool := Pool{all: rt.all, rs: rs, now: now}
		b := rs.forced
		rs.forced = nil
		if b == nil {
			b = rt.policy.Pick(pool, r)
		}
		if b == nil {
			l.metrics.noBackend.Inc()
			w.Header().Set("Retry-After", "1")
			l.fail(w, http.StatusServiceUnavailable, "no_backend")
			return
		}
		rs.tried = append(rs.tried, b)
		b.active.Add(1)
		var resp *http.Response
		var err error
		// The fast client takes idempotent requests only: it cannot tell
		// a keep-alive connection the backend closed while idle until it
		// has written on it, and only an idempotent request may then be
		// written again. net/http's Transport watches idle connections.
		if body == nil && upgrade == "" && idempotent && b.scheme == "http" {
			resp, err = rt.up.roundTrip(r.Context(), r, b)
		} else {
			if out == nil {
				out = outgoing(r, body)
			}
			out.URL.Scheme, out.URL.Host = b.scheme, b.host
			if b.prefix != "" {
				out.URL.Path = b.prefix + r.URL.Path
				if r.URL.RawPath != "" {
					out.URL.RawPath = b.prefix + r.URL.RawPath
				}
			}
			resp, err = rt.transport.RoundTrip(out)
		}
		if err != nil {
			b.active.Add(-1)
			if r.Context().Err() != nil {
				// The client went away; nothing to answer, nobody to blame.
				return
			}
			kind := classify(err)
			if kind == "connect" {
				// Its other idle connections are as dead as this one.
				b.conns.closeAll(false)
			}
			if isMaxBytes(err) {
				l.fail(w, http.StatusRequestEntityTooLarge, "body_too_large")
				return
			}
			l.passiveFail(rt, b, err, now)
			bodyUntouched := body == nil || body.read.Load() == 0
			// A connect failure means nothing reached the backend, so any
			// method may go elsewhere. After the request was sent, only an
			// idempotent request without a body is replayed: the backend
			// may have processed anything else.
			retryable := attempt < maxRetries && kind != "timeout" && bodyUntouched &&
				(kind == "connect" || (idempotent && body == nil))
			if retryable {
				if l.budget.withdraw(now) {
					l.metrics.retries.WithLabelValues(kind).Inc()
					continue
				}
				l.metrics.budgetExceeded.Inc()
			}
			l.log.Warn("backend request failed", "backend", b.id, "method", r.Method, "path", r.URL.Path, "err", err)
			if kind == "timeout" {
				l.fail(w, http.StatusGatewayTimeout, "backend_timeout")
			} else {
				l.fail(w, http.StatusBadGateway, "backend_error")
			}
			return
		}
		if rt.retryStatus(resp.StatusCode) && idempotent && body == nil && upgrade == "" && attempt < maxRetries {
			pool.rs = rs
			if next := rt.policy.Pick(pool, r); next != nil && l.budget.withdraw(now) {
				// Not a passive failure: the backend is alive and answering,
				// and one endpoint that answers 503 everywhere must not get
				// every backend ejected.
				discard(resp.Body)
				b.active.Add(-1)
				l.metrics.retries.WithLabelValues("status").Inc()
				rs.forced = next
				continue
			}
		}
		if b.consecFails.Load() != 0 {
			b.consecFails.Store(0)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			l.serveUpgrade(w, r, resp, b, rt, pool, upgrade)
			b.active.Add(-1)
			return
		}
		l.writeResponse(w, r, resp, b, rt, pool, start)
		return
	}
}

// outgoing returns the request net/http's Transport sends for r: a
// shallow copy with its own URL (set per attempt) and the tracked body.
func outgoing(r *http.Request, body *trackedBody) *http.Request {
	out := new(http.Request)
	*out = *r
	out.RequestURI = ""
	out.Close = false
	u := *r.URL
	out.URL = &u
	out.Body = nil
	if body != nil {
		out.Body = body
	}
	return out
}

// writeResponse copies the backend's response to the client, flushing as
// it goes when the length is unknown (streams, server-sent events). A
// backend that breaks off mid-body aborts the client's response too, so
// the client sees a truncated response and not a complete-looking one.
func (l *LB) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response, b *Backend, rt *runtime, pool Pool, start time.Time) {
	h := w.Header()
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if n := len(resp.Trailer); n > 0 {
		names := make([]string, 0, n)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	if rt.pinner != nil {
		rt.pinner.Pin(h, r, pool, b)
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	backendErr := copyBody(w, resp.Body, flush)
	resp.Body.Close()
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	b.active.Add(-1)
	b.requests.Add(1)
	if c := resp.StatusCode; c >= 0 && c < len(b.codes) {
		b.codes[c].Add(1)
	}
	b.latency.Observe(time.Since(start).Seconds())
	if backendErr != nil && r.Context().Err() == nil {
		l.log.Warn("backend response broke off", "backend", b.id, "path", r.URL.Path, "err", backendErr)
		b.failures.Add(1)
		panic(http.ErrAbortHandler)
	}
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody copies src to w and returns the error of reading src (a client
// that stops reading just ends the copy).
func copyBody(w http.ResponseWriter, src io.Reader, flush bool) error {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func discard(rc io.ReadCloser) {
	io.CopyN(io.Discard, rc, 64<<10)
	rc.Close()
}

func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// classify sorts a transport error into connect (nothing was sent),
// timeout (no response in time) and reset (anything else: the connection
// broke after the request may have been sent).
func classify(err error) string {
	if errors.Is(err, errNotSent) {
		return "connect"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return "connect"
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "connect"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if op != nil && op.Op == "dial" {
			return "connect"
		}
		return "timeout"
	}
	return "reset"
}

func isIdempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// fail answers a request the balancer could not proxy.
func (l *LB) fail(w http.ResponseWriter, code int, kind string) {
	l.metrics.proxyErrors.WithLabelValues(kind).Inc()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, http.StatusText(code)+"\n")
}

// Hop-by-hop headers (RFC 9110, 7.6.1) describe one connection and are not
// forwarded; neither are the headers a Connection header names.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// Shared, never modified header values: assigning them saves an
// allocation per request.
var (
	valHTTP      = []string{"http"}
	valHTTPS     = []string{"https"}
	valEmpty     = []string{""}
	valUpgrade   = []string{"Upgrade"}
	valTrailersT = []string{"trailers"}
)

// prepareRequestHeaders turns the client's headers into the backend's, in
// place: hop-by-hop headers go, X-Forwarded-* are set. From an untrusted
// peer, X-Forwarded-For/-Proto/-Host, Forwarded and X-Real-Ip are replaced
// or dropped, never passed on: a client must not be able to claim another
// address.
func prepareRequestHeaders(r *http.Request, peer string, trusted bool, upgrade string, rs *reqState) {
	h := r.Header
	wantTrailers := false
	for _, v := range h["Te"] {
		if hasToken(v, "trailers") {
			wantTrailers = true
		}
	}
	removeHopHeaders(h)
	if wantTrailers {
		h["Te"] = valTrailersT
	}
	if upgrade != "" {
		h["Connection"] = valUpgrade
		h["Upgrade"] = []string{upgrade}
	}
	if prior := h["X-Forwarded-For"]; trusted && len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + peer}
	} else {
		h["X-Forwarded-For"] = []string{peer}
	}
	if p := h["X-Forwarded-Proto"]; trusted && len(p) > 0 {
		rs.forwardedHTTPS = p[0] == "https"
	} else if r.TLS != nil {
		h["X-Forwarded-Proto"] = valHTTPS
	} else {
		h["X-Forwarded-Proto"] = valHTTP
	}
	if !trusted || len(h["X-Forwarded-Host"]) == 0 {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
	if !trusted {
		delete(h, "Forwarded")
		delete(h, "X-Real-Ip")
	}
	if _, ok := h["User-Agent"]; !ok {
		// Keep the Go client from announcing itself for the client.
		h["User-Agent"] = valEmpty
	}
}

// upgradeType returns the protocol a request or response asks to switch to
// ("websocket"), or "".
func upgradeType(h http.Header) string {
	conn := h["Connection"]
	if len(conn) == 0 {
		return ""
	}
	for _, v := range conn {
		if hasToken(v, "upgrade") {
			if u := h["Upgrade"]; len(u) > 0 {
				return u[0]
			}
		}
	}
	return ""
}

// hasToken reports whether the comma-separated header value v contains
// token, case-insensitively.
func hasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// backendURL is the request URL the transport dials for b.
func backendURL(b *Backend, path string) string {
	u := url.URL{Scheme: b.scheme, Host: b.host, Path: b.prefix + path}
	return u.String()
}
