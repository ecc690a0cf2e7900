package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/servers"
)

// roamBin is the roam binary built once by TestMain for every test.
var roamBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roam-launch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	roamBin = filepath.Join(dir, "roam")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	out, err := exec.CommandContext(ctx, "go", "build", "-o", roamBin, "github.com/roamsession/roam/cmd/roam").CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build roam: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startCluster starts a cluster and stops it at cleanup, then checks that
// no process it started is left.
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	opts.Binary = roamBin
	opts.Logger = testLogger(t)
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		pids := pidsOf(c)
		if err := c.Stop(ctxFor(t, 20*time.Second)); err != nil {
			t.Errorf("Stop: %v", err)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("pid %d still running after Stop", pid)
			}
		}
	})
	if err := c.Start(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func pidsOf(c *Cluster) []int {
	var pids []int
	for _, n := range c.Nodes() {
		if n.PID != 0 {
			pids = append(pids, n.PID)
		}
	}
	return pids
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// client is a cookie-keeping HTTP client that does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func login(t *testing.T, c *http.Client, base, user string) {
	t.Helper()
	resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {"roam"}})
	if err != nil {
		t.Fatalf("POST %s/login: %v", base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST %s/login = %d, want 303", base, resp.StatusCode)
	}
}

// me returns GET /api/me's status code.
func me(t *testing.T, c *http.Client, base string) int {
	t.Helper()
	resp, err := c.Get(base + "/api/me")
	if err != nil {
		t.Fatalf("GET %s/api/me: %v", base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestStartRunsReadyNodesAsSeparateProcesses(t *testing.T) {
	c := startCluster(t, Options{Strategy: "none", Nodes: 2})
	nodes := c.Nodes()
	if len(nodes) != 2 || nodes[0].ID != "n1" || nodes[1].ID != "n2" {
		t.Fatalf("Nodes() = %+v, want n1 and n2", nodes)
	}
	for _, n := range nodes {
		if n.State != StateRunning || n.PID == 0 || n.PID == os.Getpid() || !alive(n.PID) {
			t.Fatalf("node %+v: want a running process of its own", n)
		}
		resp, err := http.Get(n.URL + "/healthz")
		if err != nil {
			t.Fatalf("GET %s/healthz: %v", n.URL, err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Roam-Node"); got != n.ID {
			t.Fatalf("%s answered as X-Roam-Node %q, want %q", n.URL, got, n.ID)
		}
	}
	if got := c.StoreSpec(); got != "memory" {
		t.Fatalf("StoreSpec() = %q, want memory", got)
	}
}

func TestKillCrashesTheNodeAndStartNodeBringsItBackAtItsAddress(t *testing.T) {
	c := startCluster(t, Options{Strategy: "sticky", Nodes: 2})
	before, _ := c.Node("n1")
	hc := client(t)
	login(t, hc, before.URL, "alice")
	if code := me(t, hc, before.URL); code != http.StatusOK {
		t.Fatalf("GET /api/me after login = %d, want 200", code)
	}

	if err := c.Kill("n1"); err != nil {
		t.Fatalf("Kill(n1): %v", err)
	}
	killed, _ := c.Node("n1")
	if killed.State != StateKilled || alive(before.PID) {
		t.Fatalf("after Kill: state %s, pid %d alive %v; want killed and gone", killed.State, before.PID, alive(before.PID))
	}
	if !strings.Contains(killed.Exit, "killed") {
		t.Errorf("Exit = %q, want it to say the process was killed", killed.Exit)
	}
	if _, err := hc.Get(before.URL + "/healthz"); err == nil {
		t.Fatalf("%s still answers after Kill", before.URL)
	}
	if err := c.Kill("n1"); !errors.Is(err, ErrNodeNotRunning) {
		t.Fatalf("second Kill = %v, want ErrNodeNotRunning", err)
	}

	after, err := c.StartNode(ctxFor(t, 30*time.Second), "n1")
	if err != nil {
		t.Fatalf("StartNode(n1): %v", err)
	}
	if after.URL != before.URL || after.PID == before.PID || after.State != StateRunning {
		t.Fatalf("restarted n1 = %+v; want running at %s with a new pid (old %d)", after, before.URL, before.PID)
	}
	// Memory sessions die with their process: that is the problem the
	// other strategies solve.
	if code := me(t, hc, after.URL); code != http.StatusUnauthorized {
		t.Fatalf("GET /api/me on the restarted memory node = %d, want 401", code)
	}
	if _, err := c.StartNode(ctxFor(t, 5*time.Second), "n1"); !errors.Is(err, ErrNodeRunning) {
		t.Fatalf("StartNode on a running node = %v, want ErrNodeRunning", err)
	}
	if _, err := c.StartNode(ctxFor(t, 5*time.Second), "n9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("StartNode(n9) = %v, want ErrUnknownNode", err)
	}
}

func TestAddStartsTheNextNode(t *testing.T) {
	c := startCluster(t, Options{Strategy: "ip-hash", Nodes: 1})
	n, err := c.Add(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if n.ID != "n2" || n.State != StateRunning || !alive(n.PID) {
		t.Fatalf("Add() = %+v, want n2 running", n)
	}
	if got := len(c.Nodes()); got != 2 {
		t.Fatalf("%d nodes after Add, want 2", got)
	}
}

func TestRestartStopsGracefullyAndStartsAgain(t *testing.T) {
	c := startCluster(t, Options{Strategy: "none", Nodes: 1})
	before, _ := c.Node("n1")
	after, err := c.Restart(ctxFor(t, 30*time.Second), "n1")
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if after.PID == before.PID || after.URL != before.URL || alive(before.PID) {
		t.Fatalf("Restart: before %+v after %+v; want a new process at the same URL", before, after)
	}
}

func TestANodeThatFailsToStartIsReportedWithItsOutput(t *testing.T) {
	c, err := New(Options{Strategy: "none", Nodes: 2, Binary: roamBin, Logger: testLogger(t),
		NodeArgs: []string{"--log-format=bogus"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	err = c.Start(ctxFor(t, 30*time.Second))
	var ne *NodeError
	if !errors.As(err, &ne) {
		t.Fatalf("Start = %v, want a *NodeError", err)
	}
	if !strings.Contains(ne.Output, "--log-format") || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("error %q (output %q) does not quote the node's complaint about --log-format", err, ne.Output)
	}
	for _, n := range c.Nodes() {
		if n.State.Alive() || (n.PID != 0 && alive(n.PID)) {
			t.Fatalf("node %+v still alive after a failed Start", n)
		}
	}
	if _, err := c.Add(ctxFor(t, time.Second)); !errors.Is(err, ErrClusterStopped) {
		t.Fatalf("Add after a failed Start = %v, want ErrClusterStopped", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"unknown strategy", Options{Strategy: "magic"}, "unknown strategy"},
		{"too many nodes", Options{Nodes: MaxNodes + 1}, "nodes"},
		{"negative nodes", Options{Nodes: -1}, "nodes"},
		{"public host", Options{Host: "0.0.0.0"}, "loopback"},
		{"url for memory", Options{Strategy: "sticky", StoreURL: "redis://127.0.0.1:6379"}, "takes no store URL"},
		{"wrong scheme", Options{Strategy: "redis", StoreURL: "postgres://u:pw@127.0.0.1/db"}, "redis://"},
		{"missing binary", Options{Binary: "/nonexistent/roam"}, "roam binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Binary == "" {
				tc.opts.Binary = roamBin
			}
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error mentioning %q", tc.opts, err, tc.want)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestStopIsIdempotentAndRefusesLaterStarts(t *testing.T) {
	c := startCluster(t, Options{Strategy: "none", Nodes: 1})
	pids := pidsOf(c)
	if err := c.Stop(ctxFor(t, 20*time.Second)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(ctxFor(t, time.Second)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("pid %d alive after Stop", pid)
		}
	}
	if n, _ := c.Node("n1"); n.State != StateStopped {
		t.Fatalf("n1 state %s after Stop, want stopped", n.State)
	}
	if _, err := c.StartNode(ctxFor(t, time.Second), "n1"); !errors.Is(err, ErrClusterStopped) {
		t.Fatalf("StartNode after Stop = %v, want ErrClusterStopped", err)
	}
}

func TestAnExternalStrategyRunsItsOwnServer(t *testing.T) {
	if _, err := servers.LookBinary("redis-server"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("redis-server not installed (Debian package redis-server); CI=true, so this fails")
		}
		t.Skip("!!! SKIPPING: redis-server not installed (apt-get install -y redis-server)")
	}
	c := startCluster(t, Options{Strategy: "redis", Nodes: 2})
	spec := c.StoreSpec()
	addr, ok := strings.CutPrefix(spec, "redis://")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("StoreSpec() = %q, want redis://127.0.0.1:PORT", spec)
	}
	n1, _ := c.Node("n1")
	n2, _ := c.Node("n2")
	hc := client(t)
	login(t, hc, n1.URL, "dora")
	if code := me(t, hc, n2.URL); code != http.StatusOK {
		t.Fatalf("GET /api/me on n2 after logging in on n1 = %d, want 200: both share the Redis", code)
	}
	if err := c.Stop(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("the Redis at %s still answers after Stop", addr)
	}
}

func TestAMissingServerNamesThePackageAndTheFlag(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no redis-server anywhere on it
	if _, err := servers.LookBinary("redis-server"); err == nil {
		t.Skip("redis-server is in an sbin directory, which PATH does not hide")
	}
	c, err := New(Options{Strategy: "redis", Nodes: 1, Binary: roamBin, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())
	err = c.Start(ctxFor(t, 10*time.Second))
	if !errors.Is(err, ErrServerMissing) || !strings.Contains(err.Error(), "apt-get install -y redis-server") ||
		!strings.Contains(err.Error(), "--store-url redis://") {
		t.Fatalf("Start without redis-server = %v; want ErrServerMissing naming the package and --store-url", err)
	}
}
