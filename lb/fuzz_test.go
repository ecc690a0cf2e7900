package lb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzConfig feeds arbitrary YAML to Parse, Provision and Validate: none
// may panic, every error wraps ErrConfig, and a configuration that
// validates must build a balancer.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"listen: 127.0.0.1:8080\npolicy: cookie\nbackends:\n  - {id: n1, url: \"http://127.0.0.1:9001\"}\n",
		"policy: owner\nbackends:\n  - {id: n1, url: \"http://127.0.0.1:9001\"}\n  - {id: n2, url: \"http://127.0.0.1:9002/app\"}\n",
		"policy: ip_hash\nip_hash: {form: modulo}\ntrusted_proxies: [10.0.0.0/8, \"::1\"]\nbackends: [{id: a, url: \"http://[::1]:1\"}]\n",
		"health: {interval: off, timeout: 1.5s, rise: 1, fall: 1, passive_fails: -1}\nretries: {max: -1, on_status: [500]}\n",
		"cookie: {name: x, expiry: 30m, secure: always, same_site: none, http_only: false}\n",
		"timeouts: {connect: 1ms, backend: 999h, read_header: off}\nlimits: {max_header_bytes: -5, max_body_bytes: -1}\n",
		"backends: [{id: n1, url: \"http://h:99999\"}, {id: n1, url: \"ftp://x\"}]\n",
		"unknown_key: 1\n",
		"policy: [1, 2]\n",
		"drain_timeout: 1e400h\n",
		"&a [*a, *a]\n",
		"backends: !!binary Zm9v\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Parse error %v does not wrap ErrConfig", err)
			}
			return
		}
		// The fuzzer must not make the test read files: a secret_file of
		// /dev/zero would read forever.
		c.SecretFile, c.TLS = "", TLSConfig{}
		c.Logger = slog.New(slog.DiscardHandler)
		if err := c.Provision(); err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Provision error %v does not wrap ErrConfig", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate error %v does not wrap ErrConfig", err)
			}
			return
		}
		l, err := New(c)
		if err != nil {
			t.Fatalf("a configuration that validates does not build a balancer: %v\n%s", err, data)
		}
		_ = l
	})
}

// hostile is the fixture of FuzzHostileRequest: one balancer in front of
// one raw backend, made once per fuzzing process (starting them per input
// would cost more than the input) and closed when the target ends.
type hostile struct {
	lb      *LB
	addr    string // the balancer's listener
	be      *rawBackend
	entered atomic.Int64 // requests the front end parsed and handed to the balancer
	panics  atomic.Int64 // log records that mention a panic
	seq     atomic.Int64
}

// panicWatch is a slog handler that counts records mentioning a panic:
// net/http recovers a panicking handler and only logs it.
type panicWatch struct{ n *atomic.Int64 }

func (p panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (p panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(strings.ToLower(r.Message), "panic") {
		p.n.Add(1)
	}
	return nil
}
func (p panicWatch) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p panicWatch) WithGroup(string) slog.Handler      { return p }

func newHostile(f *testing.F) *hostile {
	f.Helper()
	h := &hostile{}
	be, err := startRawBackend()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { be.ln.Close() })
	h.be = be
	cfg := &Config{
		Policy: "round_robin",
		Health: HealthConfig{Interval: Off, PassiveFails: -1},
		// One idle connection: the canary after each input must reuse the
		// connection the input's request used, and so would meet any
		// bytes the input left on it.
		Pool:     PoolConfig{MaxIdlePerBackend: 1},
		Timeouts: TimeoutConfig{Backend: Duration(2 * time.Second), ReadHeader: Duration(2 * time.Second)},
		Retries:  RetryConfig{Max: -1},
		Backends: []BackendConfig{{ID: "b1", URL: "http://" + be.ln.Addr().String()}},
		Logger:   slog.New(panicWatch{&h.panics}),
	}
	if err := cfg.Provision(); err != nil {
		f.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	if h.lb, err = New(cfg); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	if err := h.lb.Start(ctx); err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	h.addr = ln.Addr().String()
	// The server Serve would make, with the same limits, around a handler
	// that counts what the front end let through: each of those may reach
	// the backend once (retries are off), no more.
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.entered.Add(1)
			h.lb.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	return h
}

// rawBackend parses what the balancer sends with http.ReadRequest, as
// strictly as a Go server does, checks every request, and answers each
// with its own path, so that a response can be matched to its request.
type rawBackend struct {
	ln       net.Listener
	handled  atomic.Int64 // requests parsed and answered
	active   atomic.Int64 // connections inside a request
	mu       sync.Mutex
	problems []string
}

func startRawBackend() (*rawBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &rawBackend{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b, nil
}

func (b *rawBackend) problem(format string, a ...any) {
	b.mu.Lock()
	b.problems = append(b.problems, fmt.Sprintf(format, a...))
	b.mu.Unlock()
}

func (b *rawBackend) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := br.Peek(1); err != nil {
			return // the balancer closed an idle connection
		}
		b.active.Add(1)
		ok := b.one(c, br)
		b.active.Add(-1)
		if !ok {
			return
		}
	}
}

// one reads and answers one request; false when the connection must end.
func (b *rawBackend) one(c net.Conn, br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		if !abandoned(c, br) {
			b.problem("the balancer sent a request the backend cannot parse: %v", err)
		}
		return false
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		if !abandoned(c, br) {
			b.problem("the balancer sent a request body that does not end as framed: %v", err)
		}
		return false
	}
	b.check(req)
	b.handled.Add(1)
	out := []byte("path=" + req.URL.RequestURI() + " body=" + strconv.Itoa(len(body)) + "\n")
	var w bytes.Buffer
	fmt.Fprintf(&w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Echo-Path: %s\r\n", len(out), req.URL.Path)
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if req.Method != http.MethodHead {
		w.Write(out)
	}
	if _, err := c.Write(w.Bytes()); err != nil {
		return false
	}
	return !req.Close
}

// abandoned reports whether the connection ends right where a request
// broke off: the balancer gave up on a request whose client went away,
// which is no framing error. Bytes after a broken request would be.
func abandoned(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := br.Peek(1)
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// check holds one forwarded request to what the balancer promises: the
// client's own forwarding headers replaced (the client is not a trusted
// proxy), hop-by-hop headers gone, a Host present.
func (b *rawBackend) check(req *http.Request) {
	if xff := req.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
		b.problem("X-Forwarded-For %q reached the backend; the balancer must set it to the peer alone", xff)
	}
	for _, h := range []string{"Forwarded", "X-Real-Ip", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Trailer"} {
		if v, ok := req.Header[h]; ok {
			b.problem("%s: %q reached the backend", h, v)
		}
	}
	if req.Host == "" {
		b.problem("a request without Host reached the backend: %s %s", req.Method, req.RequestURI)
	}
	for _, v := range req.Header.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "upgrade") && !strings.EqualFold(tok, "close") && !strings.EqualFold(tok, "keep-alive") {
				if _, ok := req.Header[http.CanonicalHeaderKey(tok)]; ok {
					b.problem("header %s, named in Connection, reached the backend", tok)
				}
			}
		}
	}
}

// waitIdle waits until no backend connection is inside a request, so that
// a request the balancer let through late is counted.
func (b *rawBackend) waitIdle(d time.Duration) {
	deadline := time.Now().Add(d)
	for b.active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// FuzzHostileRequest sends arbitrary bytes, as a client would, to a real
// balancer listening on loopback, then a canary request on a fresh
// connection. Whatever the bytes (request smuggling shapes with
// Content-Length and Transfer-Encoding together, obfuscated chunking,
// bare LFs, huge or repeated headers, bad Host values, absolute and
// asterisk forms, CONNECT, upgrades, pipelining):
//
//   - the balancer never panics;
//   - every request it forwards parses strictly and carries only what it
//     promises (its own X-Forwarded-For, no hop-by-hop headers);
//   - the backend never handles more requests than the balancer forwarded
//     (no request smuggled inside another);
//   - the canary gets its own response (no response queue poisoning).
func FuzzHostileRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nx\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
		"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: \r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET http://evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nGET /tunnel HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, Cookie\r\nX-Forwarded-For: 10.0.0.1\r\nCookie: a=b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eDp5\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /after-head HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n",
		"GET /" + strings.Repeat("a", 70000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("Cookie: a=b\r\n", 2000) + "\r\n",
		"G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	h := newHostile(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		beforeBE, beforeLB := h.be.handled.Load(), h.entered.Load()
		c, err := net.DialTimeout("tcp", h.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(input)
		// Give the balancer a moment to answer before half-closing: the
		// server cancels a request whose client has gone, which would cut
		// most requests short and leave the forwarding path unexercised.
		c.SetReadDeadline(time.Now().Add(15 * time.Millisecond))
		_, _ = io.Copy(io.Discard, c)
		_ = c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("input %.300q: the balancer kept the connection open 10 s after the client had sent everything", input)
		}
		c.Close()

		n := h.seq.Add(1)
		path := "/canary/" + strconv.FormatInt(n, 10)
		if got := canary(t, h.addr, path); got != path {
			t.Fatalf("after input %.300q the canary %s got the response for %q", input, path, got)
		}
		h.be.waitIdle(2 * time.Second)
		for _, p := range h.be.takeProblems() {
			t.Errorf("input %.300q: %s", input, p)
		}
		handled, entered := h.be.handled.Load()-beforeBE, h.entered.Load()-beforeLB
		if handled > entered {
			t.Fatalf("input %.300q: the backend handled %d requests, the front end let %d through: a request was smuggled", input, handled, entered)
		}
		if p := h.panics.Load(); p > 0 {
			t.Fatalf("input %.300q: the balancer logged a panic", input)
		}
	})
}

// canary sends GET path on a fresh connection and returns the path the
// response says it answers.
func canary(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: canary\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("canary %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("canary %s: %s", path, resp.Status)
	}
	return resp.Header.Get("X-Echo-Path")
}
