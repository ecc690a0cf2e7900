package lb

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	bs, cfgs := threeInproc(t)
	cfg := testConfig("round_robin", cfgs...)
	cfg.DrainTimeout = Duration(5 * time.Second)
	tl := startLB(t, cfg)
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(tl.url + "/block")
		if err != nil {
			done <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, 2*time.Second, "request in flight", func() bool {
		for _, b := range tl.Backends() {
			if b.Active() > 0 {
				return true
			}
		}
		return false
	})
	stopped := make(chan struct{})
	go func() { tl.stop(); close(stopped) }()
	waitFor(t, time.Second, "admin /healthz to report draining", func() bool {
		resp, err := http.Get(tl.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	for _, b := range bs {
		b.unblock()
	}
	if code := <-done; code != 200 {
		t.Errorf("request in flight at SIGTERM: %d, want 200", code)
	}
	<-stopped
	if _, err := http.Get(tl.url + "/"); err == nil {
		t.Errorf("balancer still accepts requests after draining")
	}
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	b := newRetryBudget(RetryConfig{BudgetRatio: 0.2, BudgetMinPerSecond: 10})
	now := time.Now().UnixNano()
	for i := 0; i < 100; i++ {
		b.deposit()
	}
	n := 0
	for b.withdraw(now) {
		n++
		if n > 1000 {
			break
		}
	}
	if n != 30 {
		t.Errorf("after 100 requests: %d retries allowed, want 10 per second + 20%% of 100 = 30", n)
	}
	if !b.withdraw(now + int64(time.Second)) {
		t.Errorf("a new second brings no new minimum retries")
	}
}

func TestReloadMovingABackendKeepsItsMetrics(t *testing.T) {
	bs, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("round_robin", cfgs[0]))
	get(t, http.DefaultClient, tl.url+"/")
	// Same id, another address.
	if err := tl.Reload(testConfig("round_robin", bc(cfgs[0].ID, bs[1].url()))); err != nil {
		t.Fatal(err)
	}
	if n, code, _ := get(t, http.DefaultClient, tl.url+"/"); code != 200 || n != bs[1].id {
		t.Fatalf("after moving a: %d from %s, want 200 from the new address (%s)", code, n, bs[1].id)
	}
	if m := scrape(t, tl); !strings.Contains(m, `roam_lb_request_duration_seconds_count{backend="a"} 2`) {
		t.Errorf("latency series of the moved backend lost:\n%s", grepLines(m, "duration_seconds_count"))
	}
}

// TestStaleKeepAliveIsNotAFailure: a backend that closes its idle
// keep-alive connections (a graceful restart does) must not turn the next
// request into an error or a stickiness break.
func TestStaleKeepAliveIsNotAFailure(t *testing.T) {
	bs, cfgs := threeInproc(t)
	cfg := testConfig("cookie", cfgs...)
	cfg.Health.Interval = Off // only traffic uses the pools
	tl := startLB(t, cfg)
	c := newClient()
	home, _, _ := get(t, c, tl.url+"/")
	var hb *inprocBackend
	for _, b := range bs {
		if b.id == home {
			hb = b
		}
	}
	waitFor(t, 2*time.Second, "the balancer's connection idle at the backend", func() bool {
		hb.mu.Lock()
		defer hb.mu.Unlock()
		return hb.idle > 0
	})
	hb.srv.SetKeepAlivesEnabled(false) // closes idle connections
	waitFor(t, 2*time.Second, "the idle connection closed", func() bool {
		hb.mu.Lock()
		defer hb.mu.Unlock()
		return hb.closed > 0
	})
	hb.srv.SetKeepAlivesEnabled(true)
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, tl.url+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Roam-Node") != home {
			t.Errorf("%s after the backend closed idle connections: %d from %s, want 200 from %s",
				method, resp.StatusCode, resp.Header.Get("X-Roam-Node"), home)
		}
	}
	if m := scrape(t, tl); strings.Contains(m, `roam_lb_stickiness_breaks_total{reason="failed"} 1`) {
		t.Errorf("a stale keep-alive connection broke stickiness")
	}
}
