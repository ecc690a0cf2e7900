package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// BenchmarkThroughputThroughBalancer runs 3 roam node processes behind a
// roam lb process and drives 1,000 logged-in users, every request
// incrementing its session's counter, rotating through the users' cookies
// (what wrk with a cookie-rotating script does), for ROAM_BENCH_DURATION
// (default 5 s) per setup. All setups run in the same benchmark, so their
// ratios are comparable; the baseline is memory sessions with the sticky
// cookie policy.
//
//	go test -run '^$' -bench ThroughputThroughBalancer -benchtime 1x ./cluster/
func BenchmarkThroughputThroughBalancer(b *testing.B) {
	dur := 6 * time.Second
	if v := os.Getenv("ROAM_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		dur = d
	}
	setups := []*setup{
		{name: "memory+cookie", store: "memory", policy: "cookie"},
		{name: "cluster-backup-sync+owner", mode: "backup", policy: "owner"},
		{name: "cluster-all-sync+round_robin", mode: "all", policy: "round_robin"},
	}
	for _, su := range setups {
		c := newPClusterStore(b, su.mode, su.store, 3)
		su.url = startLB(b, c, su.policy)
		su.users = loginVia(b, su.url, 1000)
	}
	// The setups take turns, one-second slices each, so a machine whose
	// load changes meanwhile slows them alike.
	b.ResetTimer()
	slices := max(1, int(dur/time.Second))
	for range slices {
		for _, su := range setups {
			su.drive(time.Second)
		}
	}
	b.StopTimer()
	base := float64(setups[0].ok.Load())
	for _, su := range setups {
		p50, p99 := su.lat.percentiles()
		b.ReportMetric(float64(su.ok.Load())/(float64(slices)), su.name+"-req/s")
		b.ReportMetric(float64(su.ok.Load())/base, su.name+"-ratio")
		b.ReportMetric(float64(su.bad.Load()), su.name+"-errors")
		b.ReportMetric(float64(p50.Microseconds()), su.name+"-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), su.name+"-p99-µs")
	}
}

// setup is one store and policy behind a balancer, with its users.
type setup struct {
	name, mode, store, policy string
	url                       string
	users                     []string
	ok, bad                   atomic.Int64
	lat                       latencies
}

// drive sends counter increments through the balancer from 32 clients,
// rotating through the users' cookies, for d.
func (su *setup) drive(d time.Duration) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i += 32 {
				start := time.Now()
				req, _ := http.NewRequest("POST", su.url+"/api/counter", nil)
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Cookie", su.users[i%len(su.users)])
				resp, err := httpc.Do(req)
				if err != nil {
					su.bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					su.bad.Add(1)
					continue
				}
				su.ok.Add(1)
				su.lat.add(time.Since(start))
			}
		})
	}
	wg.Wait()
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) percentiles() (time.Duration, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return percentiles(l.d)
}

// startLB runs roam lb in front of c's nodes and returns its URL.
func startLB(b *testing.B, c *pcluster, policy string) string {
	b.Helper()
	ports, err := proc.FreePorts("127.0.0.1", 2)
	if err != nil {
		b.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	args := []string{"lb", "--listen", listen, "--admin", admin, "--policy", policy, "--log-level", "warn"}
	for _, id := range c.liveIDs() {
		args = append(args, "--backend", id+"="+c.base(id))
	}
	p, err := proc.Start(context.Background(), proc.Spec{Name: "roam lb", Path: c.bin, Args: args})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Kill() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := "http://" + listen
	if err := proc.WaitHTTP(ctx, url+"/healthz", http.StatusOK); err != nil {
		b.Fatalf("roam lb not serving: %v\n%s", err, p.Output())
	}
	// Let the health checks mark every backend up.
	time.Sleep(2500 * time.Millisecond)
	return url
}

// loginVia logs n users in through url and returns each user's Cookie
// header (the session cookie, and the balancer's own when it sets one).
func loginVia(b *testing.B, url string, n int) []string {
	b.Helper()
	out := make([]string, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				req, _ := http.NewRequest("POST", url+"/login", strings.NewReader(fmt.Sprintf(`{"username":"user%d","password":"roam"}`, i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				resp, err := httpc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				var parts []string
				for _, ck := range resp.Cookies() {
					if ck.Value != "" {
						parts = append(parts, ck.Name+"="+ck.Value)
					}
				}
				if resp.StatusCode != 200 || len(parts) == 0 {
					failed.Add(1)
					continue
				}
				out[i] = strings.Join(parts, "; ")
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d logins through the balancer failed", failed.Load(), n)
	}
	return out
}
