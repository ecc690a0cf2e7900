package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// logOnFailure registers a cleanup that logs the tail of p's output when
// the test has failed, so a red run says what the process said.
func logOnFailure(t *testing.T, p *proc.Process) {
	t.Cleanup(func() {
		if t.Failed() {
			out := p.Output()
			if len(out) > 6000 {
				out = "…" + out[len(out)-6000:]
			}
			t.Logf("output of %s:\n%s", p, out)
		}
	})
}

// nodeSet is the app servers behind a balancer.
type nodeSet struct {
	nodes []*testbin.Node
}

// addrs returns the nodes' HTTP addresses in id order.
func (s *nodeSet) addrs() []string {
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.Addr
	}
	return out
}

func (s *nodeSet) byID(t *testing.T, id string) *testbin.Node {
	t.Helper()
	for _, n := range s.nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no node %q (have %d nodes)", id, len(s.nodes))
	return nil
}

// startNodes starts n roam nodes, n1…nN, sharing sessions as st says,
// each on a port the kernel picks. It returns once every node has printed
// its ready line and answers GET /readyz with 200. The nodes are killed at
// cleanup.
func startNodes(t *testing.T, n int, st storeSetup) *nodeSet {
	t.Helper()
	set := &nodeSet{}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		args := []string{"node", "--id", id, "--listen", "127.0.0.1:0", "--store", st.Spec}
		if st.Args != nil {
			args = append(args, st.Args(t, i)...)
		}
		set.nodes = append(set.nodes, startRoamNode(t, id, args, st.Env, st.Kind))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, nd := range set.nodes {
		if err := proc.WaitHTTP(ctx, "http://"+nd.Addr+"/readyz", http.StatusOK); err != nil {
			t.Fatalf("node %s never became ready: %v", nd.ID, err)
		}
	}
	if st.Settled != nil {
		st.Settled(t, set)
	}
	return set
}

// startRoamNode runs `roam ARGS…` (args[0] being "node") with the extra
// environment env, and returns it once it has printed its ready line,
// which must name id and the store kind. The node is killed at cleanup.
func startRoamNode(t *testing.T, id string, args, env []string, kind string) *testbin.Node {
	t.Helper()
	n := testbin.StartNode(t, testbin.NodeOptions{ID: id, Command: args, Env: env})
	if n.Store != kind {
		t.Fatalf("node %s started with store %q, want %q", id, n.Store, kind)
	}
	return n
}

// startRoamLB runs `roam ARGS…` (args[0] being "lb") and returns it once it
// accepts connections on listen and its admin API on admin reports n
// backends, all up. It is stopped with SIGTERM at cleanup.
func startRoamLB(t *testing.T, args []string, listen, admin string, n int) *balancer {
	t.Helper()
	p, err := proc.Start(context.Background(), proc.Spec{Name: "roam lb", Path: testbin.Roam(t), Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	logOnFailure(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := proc.WaitTCP(ctx, listen); err != nil {
		t.Fatalf("roam lb: %v", err)
	}
	waitBackendsUp(ctx, t, "http://"+admin, n)
	return &balancer{URL: "http://" + listen, p: p}
}

// rewriteConfig returns the shipped configuration file path with each key
// of addrs replaced by its value. Every key must occur exactly once, so a
// change to the shipped file that the test no longer matches fails loudly
// instead of testing something else.
func rewriteConfig(t *testing.T, path string, addrs map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var pairs []string
	for old, repl := range addrs {
		if n := strings.Count(text, old); n != 1 {
			t.Fatalf("%s: %q occurs %d times, want exactly once", path, old, n)
		}
		pairs = append(pairs, old, repl)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// exampleAddrs maps the addresses the shipped balancer files use (nodes
// on 127.0.0.1:9001–9003, the balancer on 127.0.0.1:8080) to the test's.
func exampleAddrs(listen string, nodes *nodeSet) map[string]string {
	m := map[string]string{"127.0.0.1:8080": listen}
	for i, a := range nodes.addrs() {
		m[fmt.Sprintf("127.0.0.1:%d", 9001+i)] = a
	}
	return m
}

// balancer is a running haproxy or nginx.
type balancer struct {
	URL string // http://host:port
	p   *proc.Process
}

// startBalancer picks a free port, writes the configuration for it with
// write (which returns the process spec to run), starts it and waits until
// it accepts connections. The port race of proc.FreeAddr is met by trying
// again, up to three times, when the process exits before listening.
func startBalancer(t *testing.T, write func(listen string) proc.Spec) *balancer {
	t.Helper()
	var last string
	for range 3 {
		listen, err := proc.FreeAddr("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		spec := write(listen)
		p, err := proc.Start(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		up := make(chan error, 1)
		go func() { up <- proc.WaitTCP(ctx, listen) }()
		select {
		case err = <-up:
		case <-p.Exited():
			err = fmt.Errorf("exited: %v", p.Wait())
		}
		cancel()
		if err == nil {
			t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
			logOnFailure(t, p)
			return &balancer{URL: "http://" + listen, p: p}
		}
		_ = p.Kill()
		last = fmt.Sprintf("%s: %v; output:\n%s", p, err, p.Output())
	}
	t.Fatalf("balancer did not start in three tries; last: %s", last)
	return nil
}

// client is a browser-like HTTP client: a cookie jar, no redirects
// followed, and an Origin header on POSTs as browsers too old to send
// Sec-Fetch-Site do (the demo app then compares Origin with Host, which
// checks that the balancer passes Host through unchanged).
type client struct {
	t    *testing.T
	base string
	jar  *cookiejar.Jar
	hc   *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, jar: jar, hc: &http.Client{
		Jar:           jar,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// me is the demo app's JSON answer.
type me struct {
	Node    string `json:"node"`
	User    string `json:"user"`
	Counter int    `json:"counter"`
	Error   string `json:"error"`
}

// call sends a JSON request and decodes the answer. It fails the test on a
// transport error, a status other than want, or a response whose
// X-Roam-Node header disagrees with its body.
func (c *client) call(method, path string, body any, want int) me {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", c.base)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d; X-Roam-Node %q; body: %.300s",
			method, path, resp.StatusCode, want, resp.Header.Get("X-Roam-Node"), raw)
	}
	var m me
	if err := json.Unmarshal(raw, &m); err != nil {
		c.t.Fatalf("%s %s: body is not JSON: %v; body: %.300s", method, path, err, raw)
	}
	if h := resp.Header.Get("X-Roam-Node"); h == "" || (m.Node != "" && h != m.Node) {
		c.t.Fatalf("%s %s: X-Roam-Node %q, body names node %q", method, path, h, m.Node)
	}
	if m.Node == "" {
		m.Node = resp.Header.Get("X-Roam-Node")
	}
	return m
}

// cookie returns the value of the named cookie the client holds, or "".
func (c *client) cookie(name string) string {
	u, err := url.Parse(c.base)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
