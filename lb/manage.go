package lb

import (
	"fmt"
	"slices"
	"time"
)

// Reload replaces the configuration without dropping connections:
// requests in flight finish with the old settings, new ones use cfg.
// Backends keep their health state and counters when their id and URL
// are unchanged; backends added at runtime and absent from cfg are
// removed. Listen and admin addresses, and switching TLS on or off, need
// a restart: such changes are refused with an error. TLS certificate files
// are read again. On any error the old configuration stays in force.
func (l *LB) Reload(cfg *Config) error {
	if !cfg.provisioned {
		if err := cfg.Provision(); err != nil {
			l.metrics.reloads.WithLabelValues("error").Inc()
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		l.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.rt.Load()
	if cfg.Listen != old.cfg.Listen || cfg.Admin != old.cfg.Admin || (cfg.TLS.Cert == "") != (old.cfg.TLS.Cert == "") {
		l.metrics.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("%w: listen, admin and turning TLS on or off need a restart", ErrConfig)
	}
	if err := l.loadCert(cfg); err != nil {
		l.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	if len(cfg.secretKey) > 0 && string(cfg.secretKey) != string(l.secret) {
		l.secret = cfg.secretKey
		l.log.Warn("sticky cookie secret changed: existing cookies no longer verify and their clients are placed anew")
	}
	if cfg.RememberMoves != old.cfg.RememberMoves {
		l.moves = newMoveTable(int64(cfg.RememberMoves.D()), 100_000)
	}
	byID := map[string]*Backend{}
	for _, b := range old.all {
		byID[b.id] = b
	}
	all := make([]*Backend, 0, len(cfg.Backends))
	for _, bc := range cfg.Backends {
		if b, ok := byID[bc.ID]; ok && b.url.String() == mustURL(bc.URL) {
			if bc.PID != 0 {
				b.pid.Store(int64(bc.PID))
			}
			all = append(all, b)
			delete(byID, bc.ID)
			continue
		}
		b, err := l.newBackend(bc)
		if err != nil {
			l.metrics.reloads.WithLabelValues("error").Inc()
			return err
		}
		all = append(all, b)
	}
	tr := old.transport
	if !sameTransportSettings(cfg, old.cfg) {
		tr = newTransport(cfg)
	}
	l.budget.configure(cfg.Retries)
	if err := l.publish(cfg, all, tr); err != nil {
		l.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	for _, b := range byID {
		l.retire(b)
	}
	for _, b := range all {
		l.startChecker(b)
	}
	if tr != old.transport {
		old.transport.CloseIdleConnections()
	}
	l.metrics.reloads.WithLabelValues("ok").Inc()
	l.log.Info("configuration reloaded", "policy", cfg.Policy, "backends", len(all))
	return nil
}

func mustURL(s string) string {
	u, err := parseBackendURL(s)
	if err != nil {
		return ""
	}
	return u.String()
}

// retire takes a removed backend out of service, after the pool without
// it was published. The caller holds l.mu.
func (l *LB) retire(b *Backend) {
	b.removed.Store(true)
	b.conns.closeAll(true)
	l.stopChecker(b)
	if l.backend(b.id) == nil {
		// Not replaced by a backend of the same id (a reload that changed
		// its URL): its latency series goes.
		l.metrics.latency.DeleteLabelValues(b.id)
	}
}

// AddBackend adds a backend while the balancer runs. It starts up (and
// one failed health check takes it down). It fails with
// ErrDuplicateBackend when the id or URL is taken and with ErrConfig when
// they are malformed.
func (l *LB) AddBackend(bc BackendConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rt := l.rt.Load()
	u := mustURL(bc.URL)
	for _, b := range rt.all {
		if b.id == bc.ID || b.url.String() == u {
			return fmt.Errorf("%w: %s (%s)", ErrDuplicateBackend, bc.ID, bc.URL)
		}
	}
	b, err := l.newBackend(bc)
	if err != nil {
		return err
	}
	all := append(slices.Clip(rt.all), b)
	if err := l.publish(rt.cfg, all, rt.transport); err != nil {
		return err
	}
	l.startChecker(b)
	l.log.Info("backend added", "backend", b.id, "url", b.url.String())
	return nil
}

// RemoveBackend removes a backend at once: requests in flight to it
// finish, no new ones are sent. (Drain first for a gentle removal.) It
// fails with ErrUnknownBackend.
func (l *LB) RemoveBackend(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rt := l.rt.Load()
	i := slices.IndexFunc(rt.all, func(b *Backend) bool { return b.id == id })
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, id)
	}
	b := rt.all[i]
	all := slices.Delete(slices.Clone(rt.all), i, i+1)
	if err := l.publish(rt.cfg, all, rt.transport); err != nil {
		return err
	}
	l.retire(b)
	l.log.Info("backend removed", "backend", id)
	return nil
}

// Drain stops placing new clients on the backend; clients pinned to it
// (by cookie or hash) keep reaching it until timeout has passed (the
// configured drain_timeout when timeout is 0), then they are re-pinned
// elsewhere. It fails with ErrUnknownBackend.
func (l *LB) Drain(id string, timeout time.Duration) error {
	b := l.backend(id)
	if b == nil {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, id)
	}
	if timeout <= 0 {
		timeout = l.Config().DrainTimeout.D()
	}
	b.drainUntil.Store(nowNano() + int64(timeout))
	b.draining.Store(true)
	l.log.Info("backend draining", "backend", id, "timeout", timeout.String())
	return nil
}

// Undrain returns a draining backend to service. It fails with
// ErrUnknownBackend.
func (l *LB) Undrain(id string) error {
	b := l.backend(id)
	if b == nil {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, id)
	}
	b.draining.Store(false)
	l.log.Info("backend back in service", "backend", id)
	return nil
}

// SetPID records the process id of a backend (shown in /api/nodes). It
// fails with ErrUnknownBackend.
func (l *LB) SetPID(id string, pid int) error {
	b := l.backend(id)
	if b == nil {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, id)
	}
	b.pid.Store(int64(pid))
	return nil
}

func (l *LB) backend(id string) *Backend {
	for _, b := range l.rt.Load().all {
		if b.id == id {
			return b
		}
	}
	return nil
}

// Backends returns the backends in configuration order.
func (l *LB) Backends() []*Backend { return slices.Clone(l.rt.Load().all) }
