package lb

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/placement"
)

func threeProcs(t *testing.T) ([]*procBackend, []BackendConfig) {
	var bs []*procBackend
	var cfgs []BackendConfig
	for _, id := range []string{"n1", "n2", "n3"} {
		b := startProcBackend(t, id, "")
		bs = append(bs, b)
		cfgs = append(cfgs, BackendConfig{ID: id, URL: b.url(), PID: b.p.PID()})
	}
	return bs, cfgs
}

func byID(bs []*procBackend, id string) *procBackend {
	for _, b := range bs {
		if b.id == id {
			return b
		}
	}
	return nil
}

// TestFailoverWithShippedDefaults is the failover story, with the
// defaults an operator gets (policy cookie, health 1s, rise/fall 2): one
// pinned client, its server SIGKILLed, 16 requests, the server restarted
// half way. Expected: no failed request, the first request after the kill
// answered by another server within 50 ms, the cookie re-pinned, and no
// move back once the old server is up again.
func TestFailoverWithShippedDefaults(t *testing.T) {
	bs, cfgs := threeProcs(t)
	cfg := &Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Backends: cfgs, Logger: testConfig("").Logger}
	tl := startLB(t, cfg)
	c := newClient()
	home, code, _ := get(t, c, tl.url+"/")
	if code != 200 {
		t.Fatalf("first request: %d", code)
	}
	for i := 0; i < 5; i++ {
		if n, _, _ := get(t, c, tl.url+"/"); n != home {
			t.Fatalf("not pinned: %s then %s", home, n)
		}
	}
	victim := byID(bs, home)
	victim.kill()

	const total = 16
	interval := 100 * time.Millisecond
	var failed int
	var firstLatency time.Duration
	var after []string
	restartedAt := -1
	for i := 0; i < total; i++ {
		if i == total/2 {
			// The old server comes back on its address; wait until the
			// balancer sees it up, so "no move back" is really tested.
			nb := startProcBackend(t, victim.id, victim.addr)
			tl.SetPID(victim.id, nb.p.PID())
			waitFor(t, 10*time.Second, "restarted backend up in the balancer", func() bool { return tl.state(victim.id) == "up" })
			restartedAt = i
		}
		start := time.Now()
		req, _ := http.NewRequest("GET", tl.url+"/", nil)
		resp, err := c.Do(req)
		lat := time.Since(start)
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
		}
		n := resp.Header.Get("X-Roam-Node")
		after = append(after, n)
		if i == 0 {
			firstLatency = lat
		}
		time.Sleep(interval)
	}
	t.Logf("failover (shipped defaults): pinned to %s, SIGKILLed; %d requests, %d failed; first request after the kill answered by %s in %v; restarted before request %d; servers after the kill: %v",
		home, total, failed, after[0], firstLatency.Round(time.Microsecond), restartedAt, after)
	if failed != 0 {
		t.Errorf("%d of %d requests failed, want 0", failed, total)
	}
	if after[0] == home {
		t.Errorf("first request after the kill answered by the killed server %s", home)
	}
	if firstLatency > 50*time.Millisecond {
		t.Errorf("first request after the kill took %v, want < 50ms", firstLatency)
	}
	for i, n := range after {
		if n != after[0] {
			t.Errorf("request %d after the kill went to %s, re-pinned to %s (moved back or wandered)", i, n, after[0])
		}
	}
	m := scrape(t, tl)
	if !strings.Contains(m, `roam_lb_stickiness_breaks_total{reason="failed"} 1`) {
		t.Errorf("want one stickiness break (failed):\n%s", grepLines(m, "stickiness"))
	}
}

// TestInFlightGETToKilledBackendIsRetried: a GET already sent to a backend
// that is then SIGKILLed is answered by another backend, not with an error.
func TestInFlightGETToKilledBackendIsRetried(t *testing.T) {
	bs, cfgs := threeProcs(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	c := newClient()
	home, _, _ := get(t, c, tl.url+"/")
	victim := byID(bs, home)

	type result struct {
		node string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(tl.url + "/slow?ms=400")
		if err != nil {
			done <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{node: resp.Header.Get("X-Roam-Node"), code: resp.StatusCode}
	}()
	waitFor(t, 3*time.Second, "the slow request to reach "+home, func() bool { return victim.stats()["/slow"] == 1 })
	victim.kill()
	r := <-done
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight GET to a killed backend: err %v, status %d; want 200 from another backend", r.err, r.code)
	}
	if r.node == home {
		t.Fatalf("answered by the killed backend %s?", home)
	}
	t.Logf("in-flight GET to %s retried on %s", home, r.node)
}

// TestInFlightPOSTIsNotReplayed: a POST the backend received and may have
// processed is never sent to a second backend when the first dies.
func TestInFlightPOSTIsNotReplayed(t *testing.T) {
	bs, cfgs := threeProcs(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	c := newClient()
	home, _, _ := get(t, c, tl.url+"/")
	victim := byID(bs, home)
	done := make(chan int, 1)
	go func() {
		resp, err := c.Post(tl.url+"/hang", "text/plain", strings.NewReader("pay 10 euros"))
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, 3*time.Second, "the POST to reach "+home, func() bool { return victim.stats()["/hang"] == 1 })
	victim.kill()
	select {
	case code := <-done:
		if code != http.StatusBadGateway {
			t.Errorf("in-flight POST to a killed backend answered %d, want 502", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the POST got no answer within 5s of the kill: was it replayed?")
	}
	for _, b := range bs {
		if b != victim {
			if n := b.stats()["/hang"]; n != 0 {
				t.Errorf("POST replayed to %s (%d times)", b.id, n)
			}
		}
	}
}

// TestConnectRefusedPOSTIsRetried: a POST whose backend refuses the
// connection never reached it, so it goes to the next one.
func TestConnectRefusedPOSTIsRetried(t *testing.T) {
	bs, cfgs := threeProcs(t)
	cfg := testConfig("round_robin", cfgs...)
	cfg.Health.Interval = Off // only the traffic can notice
	tl := startLB(t, cfg)
	bs[0].kill()
	for i := 0; i < 12; i++ {
		resp, err := http.Post(tl.url+"/echo", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"body_len":4`) {
			t.Fatalf("POST %d: status %d body %s; want 200 with the body delivered", i, resp.StatusCode, b)
		}
	}
	waitFor(t, time.Second, "passive ejection of "+bs[0].id, func() bool { return tl.state(bs[0].id) == "down" })
}

// TestOwnerFailsOverToBackupAfterPrimarySIGKILL: the owner policy sends a
// session to its primary, and after the primary dies to the member the
// cluster store placed the backup on (the next in placement order).
func TestOwnerFailsOverToBackupAfterPrimarySIGKILL(t *testing.T) {
	bs, cfgs := threeProcs(t)
	tl := startLB(t, testConfig("owner", cfgs...))
	ids := []string{"n1", "n2", "n3"}
	sid := "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	rank := placement.Rank(sid, ids, 2)
	primary, backup := rank[0], rank[1]
	for i := 0; i < 10; i++ {
		if n, _, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid); n != primary {
			t.Fatalf("request %d went to %s, primary is %s", i, n, primary)
		}
	}
	byID(bs, primary).kill()
	for i := 0; i < 10; i++ {
		n, code, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid)
		if code != 200 || n != backup {
			t.Fatalf("after SIGKILL of primary %s: request %d answered %d by %s, want 200 by backup %s", primary, i, code, n, backup)
		}
	}
	// Requests without a session still spread over the live nodes.
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		n, _, _ := get(t, http.DefaultClient, tl.url+"/")
		seen[n] = true
	}
	if seen[primary] || len(seen) != 2 {
		t.Errorf("requests without a session went to %v, want the two live nodes", seen)
	}
}

// TestHashCookieDoesNotMoveBackWhenServerReturns: with remember_moves (the
// default) a key moved off a dead server stays where it went.
func TestHashCookieDoesNotMoveBackWhenServerReturns(t *testing.T) {
	bs, cfgs := threeProcs(t)
	tl := startLB(t, testConfig("hash_cookie", cfgs...))
	sid := "user-42"
	home, _, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid)
	victim := byID(bs, home)
	victim.kill()
	moved, code, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid)
	if code != 200 || moved == home {
		t.Fatalf("after kill: %d from %s", code, moved)
	}
	startProcBackend(t, victim.id, victim.addr)
	waitFor(t, 10*time.Second, "restarted backend up", func() bool { return tl.state(victim.id) == "up" })
	for i := 0; i < 10; i++ {
		if n, _, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid); n != moved {
			t.Fatalf("after %s returned, request %d went to %s, want to stay on %s", home, i, n, moved)
		}
	}
	// With remember_moves off the key goes home again (nginx's behaviour).
	cfg2 := testConfig("hash_cookie", cfgs...)
	cfg2.RememberMoves = Off
	tl2 := startLB(t, cfg2)
	if n, _, _ := get(t, http.DefaultClient, tl2.url+"/", "Cookie", "roam_session="+sid); n != home {
		t.Errorf("remember_moves off: went to %s, want home %s", n, home)
	}
}

func TestHealthTransitionsDownAndUp(t *testing.T) {
	bs, cfgs := threeProcs(t)
	cfg := testConfig("round_robin", cfgs...)
	cfg.Health.Fall, cfg.Health.Rise = 2, 2
	tl := startLB(t, cfg)
	b := bs[1]
	resp, err := http.Post(b.url()+"/sick", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, 3*time.Second, b.id+" down", func() bool { return tl.state(b.id) == "down" })
	for i := 0; i < 30; i++ {
		if n, code, _ := get(t, http.DefaultClient, tl.url+"/"); n == b.id || code != 200 {
			t.Fatalf("request %d answered %d by %s while it is down", i, code, n)
		}
	}
	resp, err = http.Post(b.url()+"/well", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, 3*time.Second, b.id+" up", func() bool { return tl.state(b.id) == "up" })
	waitFor(t, 3*time.Second, "transitions in metrics", func() bool {
		m := scrape(t, tl)
		return strings.Contains(m, fmt.Sprintf(`roam_lb_health_transitions_total{backend="%s",to="down"} 1`, b.id)) &&
			strings.Contains(m, fmt.Sprintf(`roam_lb_health_transitions_total{backend="%s",to="up"} 1`, b.id))
	})
	// SIGKILL: down by health check even with no traffic.
	b.kill()
	waitFor(t, 3*time.Second, b.id+" down after SIGKILL", func() bool { return tl.state(b.id) == "down" })
	_ = context.Background
}
