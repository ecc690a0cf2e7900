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
	dur := 5 * time.Second
	if v := os.Getenv("ROAM_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		dur = d
	}
	setups := []struct{ name, mode, store, policy string }{
		{"memory+cookie", "", "memory", "cookie"},
		{"cluster-backup-sync+owner", "backup", "", "owner"},
		{"cluster-all-sync+round_robin", "all", "", "round_robin"},
	}
	for _, su := range setups {
		b.Run(su.name, func(b *testing.B) {
			c := newPClusterStore(b, su.mode, su.store, 3)
			lbURL := startLB(b, c, su.policy)
			users := loginVia(b, lbURL, 1000)
			var ok, bad atomic.Int64
			var lat latencies
			b.ResetTimer()
			deadline := time.Now().Add(dur)
			var wg sync.WaitGroup
			for w := range 32 {
				wg.Go(func() {
					for i := w; time.Now().Before(deadline); i += 32 {
						u := users[i%len(users)]
						start := time.Now()
						req, _ := http.NewRequest("POST", lbURL+"/api/counter", nil)
						req.Header.Set("Accept", "application/json")
						req.Header.Set("Cookie", u)
						resp, err := httpc.Do(req)
						if err != nil {
							bad.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							bad.Add(1)
							continue
						}
						ok.Add(1)
						lat.add(time.Since(start))
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			p50, p99 := lat.percentiles()
			b.ReportMetric(float64(ok.Load())/dur.Seconds(), "req/s")
			b.ReportMetric(float64(bad.Load()), "errors")
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		})
	}
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
