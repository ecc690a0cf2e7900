package cluster

// Tests with real `roam node` processes on 127.0.0.x addresses, driven over
// the demo app's HTTP API, killed with SIGKILL, stopped with SIGTERM and
// frozen with SIGSTOP. They run $ROAM_BINARY or build ./cmd/roam once
// (internal/testbin); -short skips them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testbin"
	"github.com/roamsession/roam/placement"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// buildRoam returns the roam binary (internal/testbin: $ROAM_BINARY, or
// ./cmd/roam built once); -short skips the calling test.
func buildRoam(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	return testbin.Roam(t)
}

type pnode struct {
	id, host             string
	listen, gossip, peer int
	p                    *proc.Process
	base                 string
}

// pcluster is a set of roam node processes.
type pcluster struct {
	t      testing.TB
	store  string // a non-cluster spec (memory) instead of cluster:mode
	bin    string
	mode   string // cluster:… spec mode
	secret string
	mu     sync.Mutex
	nodes  map[string]*pnode
	live   map[string]bool
}

func newPCluster(t testing.TB, mode string, n int) *pcluster {
	return newPClusterStore(t, mode, "", n)
}

// newPClusterStore starts n nodes on store (cluster:mode when store is "").
func newPClusterStore(t testing.TB, mode, store string, n int) *pcluster {
	c := &pcluster{store: store, t: t, bin: buildRoam(t), mode: mode, secret: "process-test-secret", nodes: map[string]*pnode{}, live: map[string]bool{}}
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	if store == "" {
		c.waitMembers()
	}
	return c
}

var readyRe = regexp.MustCompile(`roam node (\S+) listening on (http://\S+) store=`)

// start runs node id (again, on its old ports) and waits for /readyz.
func (c *pcluster) start(id string) *pnode {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	if n == nil {
		host := hostOf(id)
		ports, err := proc.FreePorts(host, 3)
		if err != nil {
			c.mu.Unlock()
			c.t.Fatal(err)
		}
		n = &pnode{id: id, host: host, listen: ports[0], gossip: ports[1], peer: ports[2]}
		c.nodes[id] = n
	}
	var join []string
	for other, o := range c.nodes {
		if other != id {
			join = append(join, net.JoinHostPort(o.host, strconv.Itoa(o.gossip)))
		}
	}
	c.mu.Unlock()
	args := []string{"node", "--id", id,
		"--listen", net.JoinHostPort(n.host, strconv.Itoa(n.listen)),
		"--log-level", "warn"}
	if c.store != "" {
		args = append(args, "--store", c.store)
	} else {
		args = append(args,
			"--store", "cluster:"+c.mode+sep(c.mode)+"peer="+net.JoinHostPort(n.host, strconv.Itoa(n.peer)),
			"--cluster-bind", net.JoinHostPort(n.host, strconv.Itoa(n.gossip)))
		if len(join) > 0 {
			args = append(args, "--join", strings.Join(join, ","))
		}
	}
	w := &readyWatch{ch: make(chan string, 1)}
	p, err := proc.Start(context.Background(), proc.Spec{
		Name: "roam node " + id, Path: c.bin, Args: args,
		Env:    []string{"ROAM_CLUSTER_SECRET=" + c.secret},
		Stdout: w,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = p.Kill() })
	select {
	case n.base = <-w.ch:
	case <-p.Exited():
		c.t.Fatalf("%s exited before it was ready: %v\n%s", p, p.Wait(), p.Output())
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s printed no ready line\n%s", p, p.Output())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := proc.WaitHTTP(ctx, n.base+"/readyz", http.StatusOK); err != nil {
		c.t.Fatalf("%s not ready: %v\n%s", p, err, p.Output())
	}
	c.mu.Lock()
	n.p = p
	c.live[id] = true
	c.mu.Unlock()
	return n
}

func sep(mode string) string {
	if strings.Contains(mode, "?") {
		return "&"
	}
	return "?"
}

type readyWatch struct {
	mu   sync.Mutex
	buf  []byte
	ch   chan string
	done bool
}

func (w *readyWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.buf = append(w.buf, p...)
		if m := readyRe.FindSubmatch(w.buf); m != nil {
			w.done = true
			w.ch <- string(m[2])
		}
	}
	return len(p), nil
}

func (c *pcluster) liveIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, ok := range c.live {
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (c *pcluster) base(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].base
}

// kill sends SIGKILL: a real crash.
func (c *pcluster) kill(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	c.live[id] = false
	c.mu.Unlock()
	if err := n.p.Kill(); err != nil {
		c.t.Fatal(err)
	}
	<-n.p.Exited()
}

// stop sends SIGTERM and waits: a graceful leave with hand-off.
func (c *pcluster) stop(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	c.live[id] = false
	c.mu.Unlock()
	if err := n.p.Stop(20 * time.Second); err != nil {
		c.t.Logf("stop %s: %v", id, err)
	}
}

// readyMembers reads roam_cluster_members{state="ready"} from id's /metrics.
func (c *pcluster) readyMembers(id string) int {
	resp, err := httpc.Get(c.base(id) + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`roam_cluster_members\{[^}]*state="ready"[^}]*\} (\d+)`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// waitMembers waits until every live node counts the live nodes as ready.
func (c *pcluster) waitMembers() {
	c.t.Helper()
	want := len(c.liveIDs())
	waitFor(c.t, 30*time.Second, fmt.Sprintf("every node to see %d ready members", want), func() bool {
		for _, id := range c.liveIDs() {
			if c.readyMembers(id) != want {
				return false
			}
		}
		return true
	})
}

var httpc = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
}

// puser is one logged-in user: the session cookie and the last counter the
// cluster acknowledged.
type puser struct {
	name   string
	cookie string
	acked  atomic.Int64
}

func call(method, url, cookie string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", "roam_session="+cookie)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	for _, ck := range resp.Cookies() {
		if ck.Name == "roam_session" && ck.Value != "" {
			out["_cookie"] = ck.Value
		}
	}
	return resp.StatusCode, out, nil
}

// login logs n users in, spread over the live nodes.
func (c *pcluster) login(n int) []*puser {
	c.t.Helper()
	users := make([]*puser, n)
	ids := c.liveIDs()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				u := &puser{name: "user" + strconv.Itoa(i)}
				code, body, err := call("POST", c.base(ids[i%len(ids)])+"/login", "", map[string]string{"username": u.name, "password": "roam"})
				ck, _ := body["_cookie"].(string)
				if err != nil || code != 200 || ck == "" {
					failed.Add(1)
					continue
				}
				u.cookie = ck
				users[i] = u
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		c.t.Fatalf("%d of %d logins failed", failed.Load(), n)
	}
	return users
}

// load increments counters through random live nodes until stop closes.
// It returns how many requests failed (none is acknowledged then).
func (c *pcluster) load(users []*puser, workers int, stop <-chan struct{}) (errs *atomic.Int64, done <-chan struct{}) {
	errs = new(atomic.Int64)
	d := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			deadline := time.Now().Add(2 * time.Minute) // bounded however the test goes
			for r := 0; time.Now().Before(deadline); r++ {
				for i := w; i < len(users); i += workers {
					select {
					case <-stop:
						return
					default:
					}
					ids := c.liveIDs()
					if len(ids) == 0 {
						return
					}
					u := users[i]
					via := ids[rand.IntN(len(ids))]
					code, body, err := call("POST", c.base(via)+"/api/counter", u.cookie, nil)
					if err != nil || code != 200 {
						if errs.Add(1) <= 3 {
							c.t.Logf("%s via %s: HTTP %d %v %v", u.name, via, code, body, err)
						}
						continue
					}
					got := int64(body["counter"].(float64))
					if got <= u.acked.Load() {
						c.t.Errorf("%s: counter went from acknowledged %d to %d: an acknowledged increment was lost", u.name, u.acked.Load(), got)
					}
					u.acked.Store(got)
				}
			}
		})
	}
	go func() { wg.Wait(); close(d) }()
	return errs, d
}

// verify checks every user on every live node: still logged in, with at
// least the acknowledged counter.
func (c *pcluster) verify(users []*puser) {
	c.t.Helper()
	bad := 0
	for _, id := range c.liveIDs() {
		for _, u := range users {
			code, body, err := call("GET", c.base(id)+"/api/me", u.cookie, nil)
			ok := err == nil && code == 200 && body["user"] == u.name
			if ok {
				got, _ := body["counter"].(float64)
				ok = int64(got) >= u.acked.Load()
			}
			if !ok {
				bad++
				if bad <= 5 {
					c.t.Errorf("via %s, %s: HTTP %d %v (err %v), want logged in with counter ≥ %d", id, u.name, code, body, err, u.acked.Load())
				}
			}
		}
	}
	if bad > 0 {
		c.t.Fatalf("%d reads found a user logged out or an acknowledged increment lost", bad)
	}
}

func TestProcessKillUnderLoadLosesNothing(t *testing.T) {
	for _, mode := range []string{"backup", "all"} {
		t.Run(mode, func(t *testing.T) {
			c := newPCluster(t, mode, 3)
			users := c.login(1000)
			// The Tomcat cases get users of their own: the demo's counter
			// is read-modify-write, so an increment racing the load's on
			// the same session could lose one with no replica at fault.
			loaded, reserved := users[:900], users[900:]
			stop := make(chan struct{})
			errs, done := c.load(loaded, 8, stop)
			time.Sleep(700 * time.Millisecond)
			c.kill("n2")
			if mode == "backup" {
				c.tomcatCases(reserved, "n2")
			}
			time.Sleep(time.Second)
			close(stop)
			<-done
			t.Logf("%d requests failed around the SIGKILL (in flight to the killed node)", errs.Load())
			c.verify(users)
			c.waitMembers()
			c.verify(users)
		})
	}
}

// tomcatCases exercises both of Tomcat's failover cases right after dead
// was killed, before membership has necessarily noticed: a request for a
// session whose primary died arriving (1) at its backup and (2) at the node
// that held nothing for it.
func (c *pcluster) tomcatCases(users []*puser, dead string) {
	c.t.Helper()
	all := []string{"n1", "n2", "n3"}
	seen := map[int]bool{}
	for _, u := range users {
		rank := placement.Rank(u.cookie, all, 3)
		if rank[0] != dead {
			continue
		}
		for kase, via := range map[int]string{1: rank[1], 2: rank[2]} {
			if seen[kase] {
				continue
			}
			code, body, err := call("POST", c.base(via)+"/api/counter", u.cookie, nil)
			if err != nil || code != 200 {
				c.t.Fatalf("Tomcat case %d: %s's primary %s killed, request at %s: HTTP %d %v %v", kase, u.name, dead, via, code, body, err)
			}
			got := int64(body["counter"].(float64))
			if got <= u.acked.Load() {
				c.t.Fatalf("Tomcat case %d: counter %d after acknowledged %d", kase, got, u.acked.Load())
			}
			u.acked.Store(got)
			seen[kase] = true
			c.t.Logf("Tomcat case %d: %s served at %s right after its primary %s was killed (counter %d)", kase, u.name, via, dead, got)
		}
		if seen[1] && seen[2] {
			return
		}
	}
	c.t.Fatal("no session had the killed node as primary")
}

func TestProcessRollingRestartLosesNoSession(t *testing.T) {
	for _, mode := range []string{"backup", "all"} {
		t.Run(mode, func(t *testing.T) {
			c := newPCluster(t, mode, 3)
			users := c.login(500)
			stop := make(chan struct{})
			errs, done := c.load(users, 6, stop)
			for _, id := range []string{"n1", "n2", "n3"} {
				c.stop(id)
				c.start(id)
				c.waitMembers()
			}
			close(stop)
			<-done
			t.Logf("%d requests failed during the rolling restart", errs.Load())
			c.verify(users)
		})
	}
}

func TestProcessFourthNodeJoinsUnderLoad(t *testing.T) {
	c := newPCluster(t, "backup", 3)
	users := c.login(1000)
	stop := make(chan struct{})
	errs, done := c.load(users, 8, stop)
	time.Sleep(300 * time.Millisecond)
	c.start("n4")
	c.waitMembers()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if errs.Load() > 0 {
		t.Errorf("%d requests failed while a fourth node joined, want 0", errs.Load())
	}
	c.verify(users)
}

func TestProcessLogoutThenKillPrimary(t *testing.T) {
	c := newPCluster(t, "backup", 3)
	users := c.login(30)
	for _, u := range users {
		if code, _, err := call("POST", c.base("n1")+"/logout", u.cookie, nil); err != nil || code != 200 {
			t.Fatalf("logout %s: HTTP %d %v", u.name, code, err)
		}
	}
	c.kill(placement.Primary(users[0].cookie, []string{"n1", "n2", "n3"}))
	for _, check := range []func(){func() {}, c.waitMembers} {
		check()
		for _, id := range c.liveIDs() {
			for _, u := range users {
				if code, body, _ := call("GET", c.base(id)+"/api/me", u.cookie, nil); code != http.StatusUnauthorized {
					t.Fatalf("after logout and a crash, %s via %s: HTTP %d %v, want 401", u.name, id, code, body)
				}
			}
		}
	}
}

// A node frozen with SIGSTOP for 1 s (a GC pause) is not declared dead by
// the others.
func TestProcessFrozenNodeIsNotDeclaredDead(t *testing.T) {
	c := newPCluster(t, "backup", 3)
	n2 := c.nodes["n2"].p
	var dropped atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, id := range []string{"n1", "n3"} {
				if n := c.readyMembers(id); n != 3 && n != -1 {
					dropped.Store(fmt.Sprintf("%s counted %d ready members", id, n))
				}
			}
		}
	})
	if err := n2.Freeze(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := n2.Thaw(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past any suspicion timeout
	close(stop)
	wg.Wait()
	if d := dropped.Load(); d != nil {
		t.Fatalf("a 1 s SIGSTOP got n2 declared dead: %s", d)
	}
}

// The primary is frozen (SIGSTOP) long enough to be declared dead, the
// user logs out at the backup that took over, and the primary is thawed
// holding its old, live copy: it notices its pause, leaves placement and
// re-syncs before serving, so the logout wins on every node.
func TestProcessLogoutWhilePrimaryFrozenStaysLoggedOut(t *testing.T) {
	c := newPCluster(t, "backup", 3)
	users := c.login(20)
	all := []string{"n1", "n2", "n3"}
	primary := placement.Primary(users[0].cookie, all)
	p := c.nodes[primary].p
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.live[primary] = false
	c.mu.Unlock()
	c.waitMembers()
	survivor := c.liveIDs()[0]
	for _, u := range users {
		if placement.Primary(u.cookie, all) != primary {
			continue
		}
		if code, _, err := call("POST", c.base(survivor)+"/logout", u.cookie, nil); err != nil || code != 200 {
			t.Fatalf("logout at %s: HTTP %d %v", survivor, code, err)
		}
	}
	time.Sleep(3 * time.Second)
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.live[primary] = true
	c.mu.Unlock()
	for _, u := range users {
		if placement.Primary(u.cookie, all) != primary {
			continue
		}
		// At once, before anything has settled, and on every node.
		for _, id := range all {
			if code, body, _ := call("GET", c.base(id)+"/api/me", u.cookie, nil); code != http.StatusUnauthorized {
				t.Fatalf("logged out while the primary %s was frozen; after the thaw, via %s: HTTP %d %v, want 401", primary, id, code, body)
			}
		}
	}
	c.waitMembers()
}
