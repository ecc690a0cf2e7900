// Package lb is roam's load balancer: an http.Handler that proxies to a
// set of backends by one of seven policies (round_robin, least_conn,
// random_two, ip_hash, cookie, hash_cookie, owner), with active and
// passive health checks, draining, bounded retries, and an admin API with
// Prometheus metrics.
//
// A balancer is built from a Config (Parse or Load, then New) and run with
// Run or Serve; backends can be added, removed and drained while it runs,
// and Reload swaps in a new configuration without dropping connections.
//
// The package imports no session store: the owner policy computes where a
// session lives with package placement, the same function the cluster
// store uses.
package lb

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roamsession/roam/internal/adminhost"
)

// Errors the runtime API returns.
var (
	// ErrUnknownBackend: no backend has the given id.
	ErrUnknownBackend = errors.New("lb: unknown backend")
	// ErrDuplicateBackend: a backend with that id (or URL) exists.
	ErrDuplicateBackend = errors.New("lb: duplicate backend")
	// ErrRunning: Serve or Run was called on a balancer already serving.
	ErrRunning = errors.New("lb: already serving")
)

// LB is a load balancer. Its methods are safe for concurrent use. Create
// it with New.
type LB struct {
	log     *slog.Logger
	metrics *metrics
	budget  *retryBudget
	admin   *http.ServeMux

	healthClient *http.Client

	rt atomic.Pointer[runtime] // what a request reads; replaced whole

	mu       sync.Mutex // serialises changes to rt, checkers, conns
	secret   []byte
	moves    *moveTable
	checkers map[*Backend]context.CancelFunc
	runCtx   context.Context
	running  bool
	wg       sync.WaitGroup
	conns    map[net.Conn]struct{} // hijacked (upgraded) connections
	closing  bool

	cert     atomic.Pointer[tls.Certificate]
	draining atomic.Bool // shutting down: /healthz says so
}

// runtime is an immutable snapshot of everything a request needs.
type runtime struct {
	cfg       *Config
	all       []*Backend
	policy    Policy
	pinner    Pinner
	trusted   []netip.Prefix
	transport *http.Transport
	up        *upstream
	retryOn   []int
}

func (rt *runtime) retryStatus(code int) bool {
	return code >= 500 && slices.Contains(rt.retryOn, code)
}

// New returns a balancer for cfg. It provisions and validates cfg if that
// was not done, and fails with an error wrapping ErrConfig when the
// configuration is unusable. When cfg has no secret a random one is
// generated and a warning logged: sticky cookies then do not survive a
// restart, and several balancers in front of the same backends must be
// given a shared secret. New starts nothing; see Run, Serve and Start.
func New(cfg *Config) (*LB, error) {
	if !cfg.provisioned {
		if err := cfg.Provision(); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &LB{
		log:          cfg.Logger.With("component", "lb"),
		checkers:     map[*Backend]context.CancelFunc{},
		conns:        map[net.Conn]struct{}{},
		healthClient: newHealthClient(cfg.Timeouts.Connect.D()),
	}
	l.metrics = newMetrics(l)
	l.budget = newRetryBudget(cfg.Retries)
	l.secret = cfg.secretKey
	if len(l.secret) == 0 {
		l.secret = make([]byte, 32)
		rand.Read(l.secret)
		l.log.Warn("no secret configured: generated a random one for the sticky cookie; cookies will not survive a restart, and several balancers in front of the same backends must share one secret (set secret or secret_file)")
	}
	l.moves = newMoveTable(int64(cfg.RememberMoves.D()), 100_000)
	if err := l.loadCert(cfg); err != nil {
		return nil, err
	}
	all := make([]*Backend, 0, len(cfg.Backends))
	for _, bc := range cfg.Backends {
		b, err := l.newBackend(bc)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	if err := l.publish(cfg, all, newTransport(cfg)); err != nil {
		return nil, err
	}
	l.admin = l.newAdminMux()
	return l, nil
}

func nowNano() int64 { return time.Now().UnixNano() }

func (l *LB) newBackend(bc BackendConfig) (*Backend, error) {
	u, err := parseBackendURL(bc.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: backend %s: url: %v", ErrConfig, bc.ID, err)
	}
	if bc.ID == "" || !validID(bc.ID) {
		return nil, fmt.Errorf("%w: backend id %q: use letters, digits, '-', '_' and '.'", ErrConfig, bc.ID)
	}
	b := &Backend{id: bc.ID, url: u, host: u.Host, scheme: u.Scheme, prefix: u.Path}
	b.pid.Store(int64(bc.PID))
	b.checkUp.Store(true)
	b.latency = l.metrics.latency.WithLabelValues(bc.ID)
	return b, nil
}

// publish builds the policy for cfg over all and makes it what requests
// see. The caller holds l.mu (or is New).
func (l *LB) publish(cfg *Config, all []*Backend, tr *http.Transport) error {
	pol, err := newPolicy(cfg.Policy, policyDeps{cfg: cfg, metrics: l.metrics, moves: l.moves, secret: l.secret, all: all})
	if err != nil {
		return err
	}
	rt := &runtime{cfg: cfg, all: all, policy: pol, trusted: cfg.trusted, transport: tr, up: newUpstream(cfg), retryOn: cfg.Retries.OnStatus}
	rt.pinner, _ = pol.(Pinner)
	l.rt.Store(rt)
	return nil
}

// newTransport returns the backend transport: keep-alive pools sized for
// a balancer (the standard library keeps 2 idle connections per host,
// which under load means a new TCP connection for most requests), no
// compression (bodies pass through untouched), no proxy from the
// environment, and the configured timeouts.
func newTransport(c *Config) *http.Transport {
	d := &net.Dialer{Timeout: c.Timeouts.Connect.D(), KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:            d.DialContext,
		MaxIdleConnsPerHost:    c.Pool.MaxIdlePerBackend,
		IdleConnTimeout:        c.Pool.IdleTimeout.D(),
		ResponseHeaderTimeout:  c.Timeouts.Backend.D(),
		TLSHandshakeTimeout:    c.Timeouts.Connect.D(),
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
}

func sameTransportSettings(a, b *Config) bool {
	return a.Timeouts.Connect == b.Timeouts.Connect && a.Timeouts.Backend == b.Timeouts.Backend &&
		a.Pool == b.Pool
}

// Config returns the configuration in force. It must not be modified.
func (l *LB) Config() *Config { return l.rt.Load().cfg }

// Start begins health checking until ctx ends. Serve and Run call it; a
// program that mounts the balancer as a handler in its own server calls
// it once itself. It returns ErrRunning when health checks already run.
func (l *LB) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runCtx != nil && l.runCtx.Err() == nil {
		return ErrRunning
	}
	l.runCtx = ctx
	l.checkers = map[*Backend]context.CancelFunc{}
	for _, b := range l.rt.Load().all {
		l.startChecker(b)
	}
	return nil
}

// Run listens on the configured addresses and serves until ctx ends, then
// drains (see Serve). It fails when a listener cannot be opened.
func (l *LB) Run(ctx context.Context) error {
	cfg := l.Config()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("lb: listen: %w", err)
	}
	aln, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("lb: admin listen: %w", err)
	}
	return l.Serve(ctx, ln, aln)
}

// Serve serves traffic on ln (with TLS when the config names a
// certificate) and the admin API on admin (nil for none) until ctx ends.
// Then it drains: listeners close, /healthz answers 503, in-flight requests
// and upgraded connections get up to the drain timeout to finish, and the
// rest are closed. It returns nil after a drain caused by ctx, or the
// error that stopped a listener.
func (l *LB) Serve(ctx context.Context, ln, admin net.Listener) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return ErrRunning
	}
	l.running = true
	l.closing = false
	l.mu.Unlock()
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	if err := l.Start(hctx); err != nil && !errors.Is(err, ErrRunning) {
		return err
	}
	cfg := l.Config()
	errLog := slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		ReadTimeout:       cfg.Timeouts.ReadBody.D(),
		WriteTimeout:      cfg.Timeouts.Write.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		// net/http answers 431 itself past this (it allows 4 KiB slack).
		MaxHeaderBytes: cfg.Limits.MaxHeaderBytes,
		ErrorLog:       errLog,
	}
	errc := make(chan error, 2)
	if l.cert.Load() != nil {
		srv.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.cert.Load(), nil },
		}
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	var asrv *http.Server
	if admin != nil {
		hosts := append([]string{admin.Addr().String(), cfg.Admin}, cfg.AdminHosts...)
		asrv = &http.Server{Handler: adminhost.RequireLocalHost(l.admin, hosts...), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, ErrorLog: errLog}
		go func() { errc <- asrv.Serve(admin) }()
	}
	l.log.Info("balancer serving", "listen", ln.Addr().String(), "policy", cfg.Policy, "backends", len(l.rt.Load().all))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	l.draining.Store(true)
	drain := l.Config().DrainTimeout.D()
	l.log.Info("balancer draining", "timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	l.waitConns(sctx)
	if asrv != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		asrv.Shutdown(actx)
		acancel()
		asrv.Close()
	}
	stopHealth()
	l.wg.Wait()
	l.rt.Load().transport.CloseIdleConnections()
	l.healthClient.CloseIdleConnections()
	for _, b := range l.rt.Load().all {
		b.conns.closeAll(false)
	}
	l.mu.Lock()
	l.running = false
	l.runCtx = nil
	l.mu.Unlock()
	l.draining.Store(false)
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	l.log.Info("balancer stopped", "err", serveErr)
	return serveErr
}

// trackConn adds (or removes) an upgraded connection; adding fails while
// the balancer shuts down.
func (l *LB) trackConn(c net.Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		if l.closing {
			return false
		}
		l.conns[c] = struct{}{}
		return true
	}
	delete(l.conns, c)
	return true
}

// waitConns waits for upgraded connections to end until ctx does, then
// closes the rest.
func (l *LB) waitConns(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.conns)
		if n == 0 || ctx.Err() != nil {
			l.closing = true
			for c := range l.conns {
				c.Close()
			}
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (l *LB) loadCert(cfg *Config) error {
	if cfg.TLS.Cert == "" {
		l.cert.Store(nil)
		return nil
	}
	c, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return fmt.Errorf("%w: tls: %v", ErrConfig, err)
	}
	l.cert.Store(&c)
	return nil
}
