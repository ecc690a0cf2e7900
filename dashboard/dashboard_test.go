package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// table is a Control over an in-memory list of nodes, standing in for the
// launcher (which the demo's tests exercise with real processes).
type table struct {
	mu    sync.Mutex
	nodes []Node
}

func (tb *table) list() []Node {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]Node(nil), tb.nodes...)
}

func (tb *table) find(id string) *Node {
	for i := range tb.nodes {
		if tb.nodes[i].ID == id {
			return &tb.nodes[i]
		}
	}
	return nil
}

func (tb *table) Kill(_ context.Context, id string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := tb.find(id)
	switch {
	case n == nil:
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	case n.Process != "running":
		return fmt.Errorf("%w: %s is %s", ErrConflict, id, n.Process)
	}
	n.Process, n.State = "killed", "down"
	return nil
}

func (tb *table) Start(_ context.Context, id string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := tb.find(id)
	switch {
	case n == nil:
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	case n.Process == "running":
		return fmt.Errorf("%w: %s is running", ErrConflict, id)
	}
	n.Process, n.State = "running", "up"
	return nil
}

func (tb *table) Add(context.Context) (string, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	id := fmt.Sprintf("n%d", len(tb.nodes)+1)
	tb.nodes = append(tb.nodes, Node{ID: id, Process: "running", State: "up"})
	return id, nil
}

func newTable(n int) *table {
	tb := &table{}
	for i := range n {
		tb.nodes = append(tb.nodes, Node{ID: fmt.Sprintf("n%d", i+1), PID: 1000 + i, Process: "running", State: "up"})
	}
	return tb
}

var testStrategy = Strategy{Name: "sticky", Store: "memory", Policy: "cookie", Holds: HeldByNode,
	Summary: "pinned by cookie", Trade: "Your session lives on one machine only."}

// serve starts a dashboard over tb (read-only when control is false) and
// its sampler, stopped at cleanup.
func serve(t *testing.T, tb *table, control bool) (*Dashboard, *httptest.Server) {
	t.Helper()
	cfg := Config{Strategy: testStrategy, AppURL: "http://127.0.0.1:8080", Nodes: tb.list, Interval: 50 * time.Millisecond}
	if control {
		cfg.Control = tb
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return d, srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestThePageRendersTheNodesAndStrategyWithoutJavaScript(t *testing.T) {
	_, srv := serve(t, newTable(3), true)
	resp, page := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`data-id="n1"`, `data-id="n3"`, `action="/api/nodes/n2/kill"`, `action="/api/nodes"`,
		"Strategy <code id=\"strategy-name\">sticky</code>", "Your session lives on one machine only.",
		`http-equiv="refresh"`, "1001"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'self'", csp)
	}
}

func TestReadOnlyDashboardHasNoButtonsAndNoControlRoutes(t *testing.T) {
	_, srv := serve(t, newTable(2), false)
	_, page := get(t, srv.URL+"/")
	if strings.Contains(page, "/kill") || strings.Contains(page, "Add node") {
		t.Fatal("read-only page shows control buttons")
	}
	for _, path := range []string{"/api/nodes/n1/kill", "/api/nodes/n1/start", "/api/nodes"} {
		if resp, _ := post(t, srv.URL+path, nil); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s on a read-only dashboard = %d, want 404 or 405", path, resp.StatusCode)
		}
	}
}

func TestControlRoutesAnswerJSONOrRedirectForms(t *testing.T) {
	tb := newTable(2)
	_, srv := serve(t, tb, true)

	resp, body := post(t, srv.URL+"/api/nodes/n1/kill", map[string]string{"Accept": "application/json"})
	var res actionResult
	json.Unmarshal([]byte(body), &res)
	if resp.StatusCode != http.StatusOK || res.Node != "n1" || !strings.Contains(res.Message, "killed n1") {
		t.Fatalf("kill n1 = %d %s", resp.StatusCode, body)
	}
	if tb.find("n1").Process != "killed" {
		t.Fatal("the kill did not reach the Control")
	}
	if resp, body := post(t, srv.URL+"/api/nodes/n1/kill", nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("killing a killed node = %d %s, want 409", resp.StatusCode, body)
	}
	if resp, body := post(t, srv.URL+"/api/nodes/n7/start", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("starting an unknown node = %d %s, want 404", resp.StatusCode, body)
	}
	// A plain form post (a browser without JavaScript) goes back to the page.
	resp, _ = post(t, srv.URL+"/api/nodes/n1/start", map[string]string{"Accept": "text/html,application/xhtml+xml"})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/?done=") {
		t.Fatalf("form start = %d Location %q, want 303 to /?done=…", resp.StatusCode, loc)
	}
	_, page := get(t, srv.URL+resp.Header.Get("Location"))
	if !strings.Contains(page, "started n1") {
		t.Fatal("the page after a form action does not say what happened")
	}
	resp, body = post(t, srv.URL+"/api/nodes", nil)
	if json.Unmarshal([]byte(body), &res); resp.StatusCode != http.StatusOK || res.Node != "n3" {
		t.Fatalf("add = %d %s, want n3", resp.StatusCode, body)
	}
}

func TestCrossOriginPostsAreRefused(t *testing.T) {
	tb := newTable(1)
	_, srv := serve(t, tb, true)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "https://evil.example"},
	} {
		if resp, _ := post(t, srv.URL+"/api/nodes/n1/kill", h); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST kill with %v = %d, want 403", h, resp.StatusCode)
		}
	}
	if tb.find("n1").Process != "running" {
		t.Fatal("a cross-origin request killed the node")
	}
	if resp, _ := post(t, srv.URL+"/api/nodes/n1/kill", map[string]string{"Sec-Fetch-Site": "same-origin"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("same-origin kill = %d, want 200", resp.StatusCode)
	}
}

func TestEventStreamSendsStateAtOnceAndAfterEachChange(t *testing.T) {
	tb := newTable(2)
	_, srv := serve(t, tb, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/dashboard/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan State, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var st State
				if json.Unmarshal([]byte(data), &st) == nil {
					events <- st
				}
			}
		}
		close(events)
	}()
	next := func() State {
		select {
		case st, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return st
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return State{}
	}
	if st := next(); len(st.Nodes) != 2 || st.Strategy.Name != "sticky" || !st.Control {
		t.Fatalf("first event = %+v", st)
	}
	tb.Kill(ctx, "n2")
	for {
		st := next()
		if len(st.Nodes) == 2 && !st.Nodes[1].Alive && st.Nodes[1].SessionsText == "lost with the process" {
			break
		}
	}
}

func TestStreamsEndWhenRunEnds(t *testing.T) {
	d, err := New(Config{Nodes: newTable(1).list, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	resp, err := http.Get(srv.URL + "/api/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-ran
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("event stream still open after Run ended")
	}
}

func TestRatesFollowTheBalancerCounters(t *testing.T) {
	s := newSampler(http.DefaultClient, HeldByServer, "redis")
	t0 := time.Now()
	n := Node{ID: "n1", Process: "running", State: "up"}
	s.sample(context.Background(), []Node{n}, t0)
	n.Requests = 100
	st := s.sample(context.Background(), []Node{n}, t0.Add(time.Second))
	if got := st.Nodes[0].RPS; got < 50 || got > 100 {
		t.Fatalf("rate after 100 requests in 1s = %v, want between 50 and 100 (smoothed)", got)
	}
	for i := 2; i < 12; i++ {
		st = s.sample(context.Background(), []Node{n}, t0.Add(time.Duration(i)*time.Second))
	}
	if got := st.Nodes[0].RPS; got != 0 {
		t.Fatalf("rate after 10 idle seconds = %v, want 0", got)
	}
	if st.Nodes[0].SessionsText != "none: all in redis" {
		t.Fatalf("sessions text for an external store = %q", st.Nodes[0].SessionsText)
	}
}

func TestSessionsAreReadFromTheNodesMetrics(t *testing.T) {
	clusterReg := prometheus.NewRegistry()
	held := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roam_cluster_sessions", Help: "held"}, []string{"role"})
	held.WithLabelValues("primary").Set(7)
	held.WithLabelValues("backup").Set(5)
	held.WithLabelValues("other").Set(1)
	held.WithLabelValues("tombstone").Set(30)
	clusterReg.MustRegister(held)

	memReg := prometheus.NewRegistry()
	creates := prometheus.NewCounter(prometheus.CounterOpts{Name: "roam_session_creates_total", Help: "c"})
	deletes := prometheus.NewCounter(prometheus.CounterOpts{Name: "roam_session_deletes_total", Help: "d"})
	creates.Add(9)
	deletes.Add(4)
	memReg.MustRegister(creates, deletes)

	for _, tc := range []struct {
		name  string
		reg   *prometheus.Registry
		holds string
		want  string
	}{
		{"cluster roles", clusterReg, HeldByCluster, "7 primary · 5 backup · 1 other"},
		{"memory estimate", memReg, HeldByNode, "≈5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := httptest.NewServer(promhttp.HandlerFor(tc.reg, promhttp.HandlerOpts{}))
			defer node.Close()
			s := newSampler(http.DefaultClient, tc.holds, "")
			st := s.sample(context.Background(), []Node{{ID: "n1", URL: node.URL, Process: "running", State: "up"}}, time.Now())
			if got := st.Nodes[0].SessionsText; got != tc.want {
				t.Fatalf("sessions %q (%+v), want %q", got, st.Nodes[0].Sessions, tc.want)
			}
		})
	}
}

func TestStaticFilesNeedNothingFromTheInternet(t *testing.T) {
	// The only absolute URL allowed is the SVG namespace, a name that is
	// never fetched.
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(staticFiles, "static", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, _ := staticFiles.ReadFile(path)
		for _, m := range url.FindAllString(string(b), -1) {
			if m != "http://www.w3.org" {
				t.Errorf("%s refers to %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, srv := serve(t, newTable(1), false)
	for _, p := range []string{"/static/dashboard.css", "/static/dashboard.js"} {
		if resp, body := get(t, srv.URL+p); resp.StatusCode != http.StatusOK || len(body) < 100 {
			t.Errorf("GET %s = %d (%d bytes)", p, resp.StatusCode, len(body))
		}
	}
}
