package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/servers"
	"github.com/roamsession/roam/internal/testbin"
)

// demo is a running `roam demo` process.
type demo struct {
	p        *proc.Process
	app      string // the balancer's URL
	admin    string // the dashboard's URL
	children map[string]int
	ready    time.Duration
}

var (
	demoReadyLine = `^roam demo: ready in ([0-9.]+)s`
	demoAppLine   = regexp.MustCompile(`(?m)^roam demo: app +(http://\S+)$`)
	demoAdminLine = regexp.MustCompile(`(?m)^roam demo: dashboard +(http://\S+)$`)
	demoNodeLine  = regexp.MustCompile(`(?m)^roam demo: node (\S+) +http://\S+ \(pid (\d+)\)$`)
)

// requireBinary skips the test when binary is missing, or fails it under
// CI=true, naming the Debian package, as internal/testserver does.
func requireBinary(t *testing.T, binary, pkg string) {
	t.Helper()
	if _, err := servers.LookBinary(binary); err == nil {
		return
	}
	msg := fmt.Sprintf("%s NOT FOUND: install the Debian package %s (apt-get install -y %s)", binary, pkg, pkg)
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s; CI=true, so this is a failure, not a skip", msg)
	}
	t.Skipf("!!! SKIPPING %s: %s", t.Name(), msg)
}

// startDemo runs `roam demo --listen 127.0.0.1:0 --admin 127.0.0.1:0
// ARGS…` as a real process and returns it once it printed its ready line.
// At cleanup the demo is killed and its nodes are checked to be gone.
func startDemo(t *testing.T, args ...string) *demo {
	t.Helper()
	bin := testbin.Roam(t)
	ready := testbin.NewLineWatcher(demoReadyLine)
	p, err := proc.Start(context.Background(), proc.Spec{
		Name:   "roam demo",
		Path:   bin,
		Args:   append([]string{"demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...),
		Stdout: ready,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{p: p, children: map[string]int{}}
	t.Cleanup(func() {
		_ = p.Kill()
		// Kill took the demo's process group; the nodes have groups of
		// their own and must die of the parent-death signal.
		for id, pid := range d.children {
			waitGone(t, id, pid)
		}
	})
	m := ready.Await(t, p, 60*time.Second)
	secs, _ := strconv.ParseFloat(m[1], 64)
	d.ready = time.Duration(secs * float64(time.Second))
	out := p.Output()
	d.app = submatch(t, demoAppLine, out)
	d.admin = submatch(t, demoAdminLine, out)
	for _, m := range demoNodeLine.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[2])
		d.children[m[1]] = pid
	}
	return d
}

func submatch(t *testing.T, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no line matching %q in the demo's output:\n%s", re, s)
	}
	return m[1]
}

// running reports whether pid is a live process (zombies are dead: they
// hold no port and wait only for init to reap them).
func running(pid int) bool {
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

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := proc.Poll(ctx, func(context.Context) error {
		if running(pid) {
			return fmt.Errorf("%s (pid %d) still running", what, pid)
		}
		return nil
	})
	if err != nil {
		t.Errorf("orphan: %v", err)
	}
}

// user is a browser-like client of the demo: a cookie jar, no redirects
// followed.
type user struct {
	t  *testing.T
	hc *http.Client
}

func newUser(t *testing.T) *user {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	return &user{t: t, hc: hc}
}

func (u *user) login(base, name string) {
	u.t.Helper()
	resp, err := u.hc.PostForm(base+"/login", url.Values{"username": {name}, "password": {"roam"}})
	if err != nil {
		u.t.Fatalf("login: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		u.t.Fatalf("POST /login = %d, want 303", resp.StatusCode)
	}
}

// me is GET /api/me: the serving node, and the user ("" when logged out).
func (u *user) me(base string) (node, name string) {
	u.t.Helper()
	resp, err := u.hc.Get(base + "/api/me")
	if err != nil {
		u.t.Fatalf("GET /api/me: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Node, User string }
	json.NewDecoder(resp.Body).Decode(&body)
	switch resp.StatusCode {
	case http.StatusOK:
		return body.Node, body.User
	case http.StatusUnauthorized:
		return resp.Header.Get("X-Roam-Node"), ""
	}
	u.t.Fatalf("GET /api/me = %d", resp.StatusCode)
	return "", ""
}

// adminPost POSTs to the dashboard's API and returns the status and body.
// A "Host" entry in header replaces the request's Host.
func adminPost(t *testing.T, d *demo, path string, header map[string]string) (int, string) {
	t.Helper()
	return adminDo(t, d, http.MethodPost, path, header)
}

func adminDo(t *testing.T, d *demo, method, path string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, d.admin+path, nil)
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// apiNodes is GET /api/nodes of the balancer.
type apiNode struct {
	ID    string `json:"id"`
	PID   int    `json:"pid"`
	State string `json:"state"`
}

func nodesOf(t *testing.T, d *demo) map[string]apiNode {
	t.Helper()
	resp, err := http.Get(d.admin + "/api/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []apiNode
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]apiNode{}
	for _, n := range list {
		out[n.ID] = n
	}
	return out
}

func TestDemoStartsQuicklyAndListsItsNodes(t *testing.T) {
	d := startDemo(t, "--strategy", "none", "--nodes", "3")
	if d.ready <= 0 || d.ready > 10*time.Second {
		t.Errorf("demo says it was ready in %v, want under 10s", d.ready)
	}
	nodes := nodesOf(t, d)
	if len(nodes) != 3 || len(d.children) != 3 {
		t.Fatalf("/api/nodes = %v, printed nodes %v; want 3 of each", nodes, d.children)
	}
	for id, pid := range d.children {
		if nodes[id].PID != pid || pid == d.p.PID() || !running(pid) {
			t.Fatalf("node %s: printed pid %d, /api/nodes pid %d; want the same running process of its own", id, pid, nodes[id].PID)
		}
	}
	resp, err := http.Get(d.admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `data-id="n3"`) || !strings.Contains(string(page), "round_robin") {
		t.Fatalf("dashboard page does not show the nodes and the policy:\n%.2000s", page)
	}
}

// TestDemoKillStartAdd drives the dashboard's API under the strategies
// that keep sessions in one node's memory: the login is lost when its
// node dies.
func TestDemoKillStartAdd(t *testing.T) {
	for _, strategy := range []string{"sticky", "ip-hash"} {
		t.Run(strategy, func(t *testing.T) {
			d := startDemo(t, "--strategy", strategy, "--nodes", "3")
			u := newUser(t)
			u.login(d.app, "alice")
			node, name := u.me(d.app)
			if name != "alice" {
				t.Fatalf("after login: served by %s as %q, want alice (the %s policy pins the user)", node, name, strategy)
			}
			for range 5 {
				if again, name := u.me(d.app); again != node || name != "alice" {
					t.Fatalf("pinned to %s, then served by %s as %q", node, again, name)
				}
			}
			pid := nodesOf(t, d)[node].PID

			if code, body := adminPost(t, d, "/api/nodes/"+node+"/kill", nil); code != http.StatusOK {
				t.Fatalf("kill %s = %d %s", node, code, body)
			}
			if running(pid) {
				t.Fatalf("%s (pid %d) still running after kill", node, pid)
			}
			next, name := u.me(d.app)
			if next == node || name != "" {
				t.Fatalf("after killing %s: served by %s as %q; want another node and logged out", node, next, name)
			}
			if code, _ := adminPost(t, d, "/api/nodes/"+node+"/kill", nil); code != http.StatusConflict {
				t.Fatalf("killing a dead node = %d, want 409", code)
			}

			if code, body := adminPost(t, d, "/api/nodes/"+node+"/start", nil); code != http.StatusOK {
				t.Fatalf("start %s = %d %s", node, code, body)
			}
			back := nodesOf(t, d)[node]
			if back.PID == pid || back.PID == 0 || !running(back.PID) || back.State != "up" {
				t.Fatalf("restarted %s = %+v; want up with a new running pid (old %d)", node, back, pid)
			}
			d.children[node+"'"] = back.PID

			code, body := adminPost(t, d, "/api/nodes", nil)
			var added struct{ Node string }
			json.Unmarshal([]byte(body), &added)
			if code != http.StatusOK || added.Node != "n4" {
				t.Fatalf("add = %d %s, want n4", code, body)
			}
			n4 := nodesOf(t, d)["n4"]
			if n4.State != "up" || !running(n4.PID) {
				t.Fatalf("added n4 = %+v, want up and running", n4)
			}
			d.children["n4"] = n4.PID
		})
	}
}

// counter is POST /api/counter: the new value, and the node that served it.
func (u *user) counter(base string) (int, string) {
	u.t.Helper()
	resp, err := u.hc.Post(base+"/api/counter", "", nil)
	if err != nil {
		u.t.Fatalf("POST /api/counter: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Node    string
		Counter int
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		u.t.Fatalf("POST /api/counter = %d, want 200 with a counter", resp.StatusCode)
	}
	return body.Counter, body.Node
}

// meCounter is GET /api/me with the counter.
func (u *user) meCounter(base string) (node, name string, counter int) {
	u.t.Helper()
	resp, err := u.hc.Get(base + "/api/me")
	if err != nil {
		u.t.Fatalf("GET /api/me: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Node, User string
		Counter    int
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Node, body.User, body.Counter
}

// TestDemoSharedSessionsSurviveAKill kills the node that served the user
// under the cluster strategies, and under Redis (a server the demo starts
// itself): the login and every acknowledged increment survive, on another
// node; so they do when the node comes back and when a node is added.
func TestDemoSharedSessionsSurviveAKill(t *testing.T) {
	for _, strategy := range []string{"backup", "all", "redis"} {
		t.Run(strategy, func(t *testing.T) {
			if strategy == "redis" {
				requireBinary(t, "redis-server", "redis-server")
			}
			d := startDemo(t, "--strategy", strategy, "--nodes", "3")
			u := newUser(t)
			u.login(d.app, "carol")
			var last string
			for want := 1; want <= 3; want++ {
				got, node := u.counter(d.app)
				if got != want {
					t.Fatalf("increment %d answered %d (by %s)", want, got, node)
				}
				last = node
			}
			pid := nodesOf(t, d)[last].PID
			if code, body := adminPost(t, d, "/api/nodes/"+last+"/kill", nil); code != http.StatusOK {
				t.Fatalf("kill %s = %d %s", last, code, body)
			}
			if running(pid) {
				t.Fatalf("%s (pid %d) still running after kill", last, pid)
			}
			for range 6 {
				node, name, counter := u.meCounter(d.app)
				if node == last || name != "carol" || counter != 3 {
					t.Fatalf("after killing %s: served by %s as %q with counter %d; want carol, 3, another node", last, node, name, counter)
				}
			}
			if code, body := adminPost(t, d, "/api/nodes/"+last+"/start", nil); code != http.StatusOK {
				t.Fatalf("start %s = %d %s", last, code, body)
			}
			d.children[last+"'"] = nodesOf(t, d)[last].PID
			code, body := adminPost(t, d, "/api/nodes", nil)
			if code != http.StatusOK {
				t.Fatalf("add = %d %s", code, body)
			}
			d.children["n4"] = nodesOf(t, d)["n4"].PID
			if got, node := u.counter(d.app); got != 4 {
				t.Fatalf("increment after restart and add = %d (by %s), want 4", got, node)
			}
			for range 6 {
				if node, name, counter := u.meCounter(d.app); name != "carol" || counter != 4 {
					t.Fatalf("after restart and add: served by %s as %q with counter %d; want carol, 4", node, name, counter)
				}
			}
		})
	}
}

func TestDemoControlRefusesCrossOriginRequests(t *testing.T) {
	d := startDemo(t, "--strategy", "none", "--nodes", "1")
	if code, _ := adminPost(t, d, "/api/nodes/n1/kill", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Fatalf("cross-site kill = %d, want 403", code)
	}
	if !running(d.children["n1"]) {
		t.Fatal("a cross-site request killed n1")
	}

	// DNS rebinding: a page on evil.example re-points its own name at the
	// admin listener, so its requests are same-origin by Origin and Host.
	// Only the Host says they are not for us.
	u, err := url.Parse(d.admin)
	if err != nil {
		t.Fatal(err)
	}
	rebound := map[string]string{"Host": "evil.example:" + u.Port(), "Origin": "http://evil.example:" + u.Port(), "Sec-Fetch-Site": "same-origin"}
	if code, body := adminPost(t, d, "/api/nodes/n1/kill", rebound); code != http.StatusMisdirectedRequest {
		t.Fatalf("kill with Host evil.example = %d %q, want 421", code, body)
	}
	if code, body := adminDo(t, d, http.MethodGet, "/api/nodes", map[string]string{"Host": "evil.example"}); code != http.StatusMisdirectedRequest || strings.Contains(body, "n1") {
		t.Fatalf("GET /api/nodes with Host evil.example = %d %q, want 421 naming no node", code, body)
	}
	if !running(d.children["n1"]) {
		t.Fatal("a request for Host evil.example killed n1")
	}
	// The names a local user types still work.
	for _, host := range []string{"localhost:" + u.Port(), "localhost", u.Host} {
		if code, body := adminDo(t, d, http.MethodGet, "/api/nodes", map[string]string{"Host": host}); code != http.StatusOK {
			t.Fatalf("GET /api/nodes with Host %s = %d %q, want 200", host, code, body)
		}
	}
}

// TestDemoLeavesNoProcessBehind stops the demo with each signal a user or
// a supervisor might send and checks that no node outlives it.
func TestDemoLeavesNoProcessBehind(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			d := startDemo(t, "--strategy", "sticky", "--nodes", "2")
			if len(d.children) != 2 {
				t.Fatalf("children %v, want 2", d.children)
			}
			// The demo alone, not its group: as a terminal's Ctrl-C, a
			// supervisor's SIGTERM or the OOM killer's SIGKILL would.
			if err := syscall.Kill(d.p.PID(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.p.Exited():
			case <-time.After(30 * time.Second):
				t.Fatalf("demo still running 30s after %v", sig)
			}
			for id, pid := range d.children {
				waitGone(t, id, pid)
			}
			if sig != syscall.SIGKILL {
				if err := d.p.Wait(); err != nil {
					t.Fatalf("demo exit after %v: %v, want status 0; output:\n%s", sig, err, d.p.Output())
				}
				if !strings.Contains(d.p.Output(), "stopped the balancer and every node") {
					t.Fatalf("demo did not report stopping; output:\n%s", d.p.Output())
				}
			}
		})
	}
}

// TestDemoDefaultStrategyWorksOrSaysWhatDoes runs plain `roam demo`: with
// the cluster store in the build it must come up; without it, it must fail
// with a message naming a strategy that works, never a panic.
func TestDemoDefaultStrategyWorksOrSaysWhatDoes(t *testing.T) {
	bin := testbin.Roam(t)
	p, err := proc.Start(context.Background(), proc.Spec{
		Name: "roam demo", Path: bin,
		Args: []string{"demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--nodes", "2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = proc.Poll(ctx, func(context.Context) error {
		select {
		case <-p.Exited():
			return nil
		default:
		}
		if strings.Contains(p.Output(), "roam demo: ready in") {
			return nil
		}
		return fmt.Errorf("neither ready nor exited")
	})
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, p.Output())
	}
	out := p.Output()
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Fatalf("the demo panicked:\n%s", out)
	}
	if strings.Contains(out, "ready in") {
		if !strings.Contains(out, "strategy backup") {
			t.Fatalf("default strategy is not backup:\n%s", out)
		}
		return
	}
	<-p.Exited()
	if p.Wait() == nil {
		t.Fatalf("demo exited 0 without becoming ready:\n%s", out)
	}
	if !strings.Contains(out, "roam demo --strategy sticky") {
		t.Fatalf("the failure does not name a strategy that works:\n%s", out)
	}
}

func TestDemoRefusesAPublicAdminAddress(t *testing.T) {
	var stdout, stderr strings.Builder
	err := runDemo(context.Background(), demoConfig{nodes: 1, strategy: "none", listen: "127.0.0.1:0", admin: "0.0.0.0:0", logLevel: "info"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("runDemo with --admin 0.0.0.0:0 = %v, want a refusal naming loopback", err)
	}
	err = runDemo(context.Background(), demoConfig{nodes: 1, strategy: "fastest", listen: "127.0.0.1:0", admin: "127.0.0.1:0", logLevel: "info"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "sticky") {
		t.Fatalf("runDemo with an unknown strategy = %v, want the list of strategies", err)
	}
}
