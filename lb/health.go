package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Health has two halves. Active checks: a goroutine per backend sends
// GET health.path every interval; fall consecutive failures take the
// backend down, rise consecutive passes bring it back. Passive ejection:
// passive_fails consecutive failed proxied attempts take it out of
// rotation for passive_cool_down, without waiting for the next check (a
// SIGKILLed server refuses connections at once; traffic notices before
// any checker does).

// startChecker starts the health loop of b if the balancer is running.
// The caller holds l.mu.
func (l *LB) startChecker(b *Backend) {
	if l.runCtx == nil {
		return
	}
	if _, ok := l.checkers[b]; ok {
		return
	}
	ctx, cancel := context.WithCancel(l.runCtx)
	l.checkers[b] = cancel
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.checkLoop(ctx, b)
	}()
}

// stopChecker stops b's health loop. The caller holds l.mu.
func (l *LB) stopChecker(b *Backend) {
	if cancel, ok := l.checkers[b]; ok {
		cancel()
		delete(l.checkers, b)
	}
}

// checkLoop runs the active checks of b and reports state transitions,
// whichever half caused them, until ctx ends. Settings are re-read every
// round, so a reload takes effect without restarting the loop.
func (l *LB) checkLoop(ctx context.Context, b *Backend) {
	hc := l.rt.Load().cfg.Health
	// A new backend starts up (so it takes traffic at once) but one failed
	// check takes it down, as HAProxy's "up, going down" start.
	fails, passes := hc.Fall-1, 0
	wasUp := b.checkUp.Load()
	for {
		hc = l.rt.Load().cfg.Health
		if hc.Interval.IsOff() && !b.checkUp.Load() {
			// Checks were switched off by a reload: nothing can bring the
			// backend back but trusting it again (passive ejection still
			// guards it).
			b.checkUp.Store(true)
		}
		if !hc.Interval.IsOff() {
			err := l.checkOnce(ctx, b, hc)
			if ctx.Err() != nil {
				return
			}
			b.checked.Store(nowNano())
			if err != nil {
				passes = 0
				fails++
				msg := err.Error()
				b.lastErr.Store(&msg)
				if b.checkUp.Load() && fails >= hc.Fall {
					b.checkUp.Store(false)
				}
			} else {
				fails = 0
				passes++
				if !b.checkUp.Load() && passes >= hc.Rise {
					b.checkUp.Store(true)
				}
			}
		}
		now := nowNano()
		up := b.checkUp.Load() && now >= b.ejectedUntil.Load()
		if up != wasUp {
			wasUp = up
			if up {
				b.toUp.Add(1)
				l.log.Info("backend up", "backend", b.id, "url", b.url.String())
			} else {
				b.toDown.Add(1)
				reason := "passive ejection"
				if !b.checkUp.Load() {
					reason = "health check"
					if p := b.lastErr.Load(); p != nil {
						reason += ": " + *p
					}
				}
				l.log.Warn("backend down", "backend", b.id, "url", b.url.String(), "reason", reason)
			}
		}
		b.conns.reap(l.rt.Load().up.idleTimeout)
		wait := hc.Interval.D()
		if hc.Interval.IsOff() {
			wait = time.Second // still watch passive ejections
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// checkOnce sends one health check to b. It returns nil for a 2xx or 3xx
// answer within the timeout, an error saying what went wrong otherwise.
func (l *LB) checkOnce(ctx context.Context, b *Backend, hc HealthConfig) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, backendURL(b, hc.Path), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "roam-lb-health/1")
	resp, err := l.healthClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", hc.Path, err)
	}
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: status %d", hc.Path, resp.StatusCode)
	}
	return nil
}

// passiveFail records a failed proxied attempt to b and ejects b when it
// has failed passive_fails times in a row.
func (l *LB) passiveFail(rt *runtime, b *Backend, err error, now int64) {
	b.failures.Add(1)
	msg := err.Error()
	b.lastErr.Store(&msg)
	limit := rt.cfg.Health.PassiveFails
	n := b.consecFails.Add(1)
	if limit <= 0 || int(n) < limit {
		return
	}
	if now < b.ejectedUntil.Load() {
		return
	}
	b.consecFails.Store(0)
	b.ejectedUntil.Store(now + int64(rt.cfg.Health.PassiveCoolDown.D()))
	l.log.Warn("backend ejected", "backend", b.id, "consecutive_failures", n,
		"cool_down", rt.cfg.Health.PassiveCoolDown.D().String(), "last_error", msg)
}

// newHealthClient returns the client for active checks: its own small
// pool, so checks never queue behind traffic, and no proxy from the
// environment.
func newHealthClient(connect time.Duration) *http.Client {
	d := &net.Dialer{Timeout: connect}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
