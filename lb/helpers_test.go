package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

var (
	buildOnce   sync.Once
	backendBin  string
	buildErr    error
	buildTmpDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildTmpDir != "" {
		os.RemoveAll(buildTmpDir)
	}
	os.Exit(code)
}

// testBackendBinary builds lb/internal/testbackend once per test binary.
func testBackendBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildTmpDir, buildErr = os.MkdirTemp("", "roam-lb-test")
		if buildErr != nil {
			return
		}
		backendBin = filepath.Join(buildTmpDir, "testbackend")
		out, err := exec.Command("go", "build", "-o", backendBin, "./internal/testbackend").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build testbackend: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return backendBin
}

// procBackend is a testbackend running as its own process.
type procBackend struct {
	t    *testing.T
	id   string
	addr string
	p    *proc.Process
}

func (b *procBackend) url() string { return "http://" + b.addr }

// startProcBackend starts a testbackend process on addr (a free port when
// empty) and waits until it answers /healthz.
func startProcBackend(t *testing.T, id, addr string) *procBackend {
	t.Helper()
	bin := testBackendBinary(t)
	if addr == "" {
		a, err := proc.FreeAddr("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		addr = a
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := proc.Start(context.Background(), proc.Spec{Name: "testbackend-" + id, Path: bin, Args: []string{"--id", id, "--listen", addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	if err := proc.WaitHTTP(ctx, "http://"+addr+"/healthz", 200); err != nil {
		t.Fatalf("backend %s on %s did not come up: %v\n%s", id, addr, err, p.Output())
	}
	return &procBackend{t: t, id: id, addr: addr, p: p}
}

func (b *procBackend) kill() {
	b.t.Helper()
	if err := b.p.Kill(); err != nil {
		b.t.Fatalf("kill %s: %v", b.id, err)
	}
}

// stats returns the backend's per-path request counts.
func (b *procBackend) stats() map[string]int {
	b.t.Helper()
	resp, err := http.Get(b.url() + "/stats")
	if err != nil {
		b.t.Fatalf("stats of %s: %v", b.id, err)
	}
	defer resp.Body.Close()
	m := map[string]int{}
	json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// inprocBackend is an httptest-like backend in this process, for tests
// that need no process to kill.
type inprocBackend struct {
	id      string
	addr    string
	srv     *http.Server
	ln      net.Listener
	mu      sync.Mutex
	sick    bool
	hits    map[string]int
	release chan struct{} // closed to let /block requests finish
	idle    int           // connections now idle (ConnState)
	closed  int           // connections closed so far
}

// unblock lets every /block request, present and future, finish.
func (b *inprocBackend) unblock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func startInproc(t *testing.T, id string) *inprocBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &inprocBackend{id: id, addr: ln.Addr().String(), ln: ln, hits: map[string]int{}, release: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			b.mu.Lock()
			defer b.mu.Unlock()
			switch s {
			case http.StateIdle:
				b.idle++
			case http.StateActive:
				if b.idle > 0 {
					b.idle--
				}
			case http.StateClosed:
				b.closed++
			}
		}}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.unblock(); b.srv.Close() })
	return b
}

func (b *inprocBackend) url() string { return "http://" + b.addr }

func (b *inprocBackend) hitsOf(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[path]
}

func (b *inprocBackend) setSick(s bool) {
	b.mu.Lock()
	b.sick = s
	b.mu.Unlock()
}

func (b *inprocBackend) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Roam-Node", b.id)
	b.mu.Lock()
	sick := b.sick
	b.hits[r.URL.Path]++
	b.mu.Unlock()
	switch r.URL.Path {
	case "/healthz":
		if sick {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	case "/echo":
		n, _ := io.Copy(io.Discard, r.Body)
		json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "host": r.Host, "body_len": n, "path": r.URL.Path, "query": r.URL.RawQuery})
	case "/block":
		select {
		case <-b.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "released\n")
	case "/slow":
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow\n")
	case "/status503":
		if b.id == "bad" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "fine\n")
	default:
		fmt.Fprintf(w, "hello from %s\n", b.id)
	}
}

// testLB is a balancer serving on loopback ports for one test.
type testLB struct {
	*LB
	url   string // traffic base URL
	admin string // admin base URL
	stop  func()
}

// testConfig returns a provisioned config with quick health settings.
func testConfig(policy string, backends ...BackendConfig) *Config {
	return &Config{
		Listen:   "127.0.0.1:0",
		Admin:    "127.0.0.1:0",
		Policy:   policy,
		Secret:   "0123456789abcdef0123456789abcdef",
		Health:   HealthConfig{Interval: Duration(50 * time.Millisecond), Timeout: Duration(200 * time.Millisecond), Rise: 1, Fall: 1},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backends: backends,
	}
}

func bc(id, url string) BackendConfig { return BackendConfig{ID: id, URL: url} }

func startLB(t *testing.T, cfg *Config) *testLB {
	t.Helper()
	if os.Getenv("LB_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln, aln) }()
	tl := &testLB{LB: l, url: "http://" + ln.Addr().String(), admin: "http://" + aln.Addr().String()}
	var once sync.Once
	tl.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(tl.stop)
	return tl
}

// client returns an HTTP client with a cookie jar, like a browser.
func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// get does a GET and returns the serving node, the status and the body.
func get(t *testing.T, c *http.Client, url string, hdr ...string) (node string, code int, body string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Header.Get("X-Roam-Node"), resp.StatusCode, string(b)
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (tl *testLB) state(id string) string {
	for _, n := range tl.Nodes() {
		if n.ID == id {
			return n.State
		}
	}
	return "absent"
}

func setCookieValue(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func contains(hay, needle string) bool { return strings.Contains(hay, needle) }
