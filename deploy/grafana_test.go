package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/lb"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// loadDashboard reads path and checks its structure: unique panel ids,
// panels inside the 24-column grid and not overlapping, every panel on the
// dashboard's datasource variable with at least one query.
func loadDashboard(t *testing.T, path string) *dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: title %q, uid %q: both are needed for import and provisioning", path, d.Title, d.UID)
	}
	if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("%s: want a first template variable \"datasource\" of type datasource over prometheus", path)
	}
	ids := map[int]string{}
	var boxes []dashPanel
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W < 1 || g.X < 0 || g.X+g.W > 24 || g.H < 1 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, g)
		}
		for _, o := range boxes {
			h := o.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap (%+v, %+v)", o.Title, p.Title, h, g)
			}
		}
		boxes = append(boxes, p)
		if p.Type == "row" {
			continue
		}
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q, want timeseries or stat", p.Title, p.Type)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Expr == "" || refs[q.RefID] {
				t.Errorf("panel %q: target %q is empty or its refId is repeated", p.Title, q.RefID)
			}
			refs[q.RefID] = true
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") || strings.Count(q.Expr, "{") != strings.Count(q.Expr, "}") {
				t.Errorf("panel %q: unbalanced brackets in %s", p.Title, q.Expr)
			}
		}
	}
	return &d
}

// exprs returns every query of the dashboard.
func (d *dashboard) exprs() []string {
	var out []string
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out = append(out, q.Expr)
		}
	}
	return out
}

var (
	metricName  = regexp.MustCompile(`\b(?:roam|go|process)_[a-zA-Z0-9_:]*`)
	selector    = regexp.MustCompile(`\b((?:roam|go|process)_[a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcherKey  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	sampleLine  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	sampleLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
)

// targetLabels are the labels Prometheus adds to every series it scrapes;
// they are on no /metrics page.
var targetLabels = []string{"instance", "job"}

// exposition is what a set of /metrics pages exposes: each series name
// with the label names seen on it.
type exposition map[string]map[string]bool

func (e exposition) add(page string) {
	for line := range strings.SplitSeq(page, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := e[m[1]]
		if labels == nil {
			labels = map[string]bool{}
			e[m[1]] = labels
		}
		for _, l := range sampleLabel.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = true
		}
	}
}

// problems lists what expr names that the exposition does not have: a
// metric, a label in a selector, or a grouping label that none of the
// expression's metrics carries.
func (e exposition) problems(expr string) []string {
	var out []string
	for _, s := range selector.FindAllStringSubmatch(expr, -1) {
		for _, k := range matcherKey.FindAllStringSubmatch(stringLit.ReplaceAllString(s[2], `""`), -1) {
			if labels, ok := e[s[1]]; ok && !labels[k[1]] {
				out = append(out, fmt.Sprintf("label %s on %s", k[1], s[1]))
			}
		}
	}
	bare := stringLit.ReplaceAllString(expr, `""`)
	names := metricName.FindAllString(bare, -1)
	for _, n := range names {
		if _, ok := e[n]; !ok {
			out = append(out, "metric "+n)
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(bare, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			l = strings.TrimSpace(l)
			if l == "" || slices.Contains(targetLabels, l) {
				continue
			}
			if !slices.ContainsFunc(names, func(n string) bool { return e[n][l] }) {
				out = append(out, fmt.Sprintf("grouping label %s on any of %v", l, names))
			}
		}
	}
	return out
}

func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// TestGrafanaDashboardNamesRealMetrics checks deploy/grafana/roam.json
// against what roam really exposes: it starts two roam node processes on
// cluster:backup and an in-process roam lb in front of them, sends a
// login and some requests through the balancer, and scrapes the nodes'
// /metrics and the balancer's admin /metrics. Every metric the dashboard
// queries must be among the scraped series, with every label it selects
// or groups by; and the dashboard must cover what issue 10 asks: nodes,
// sessions by role, replication latency, balancer codes and latency.
func TestGrafanaDashboardNamesRealMetrics(t *testing.T) {
	dash := loadDashboard(t, "grafana/roam.json")
	all := strings.Join(dash.exprs(), "\n")
	for _, want := range []string{
		"roam_node_info", "roam_lb_backend_state", `roam_cluster_members{state="ready"}`, // nodes
		"sum by (role) (roam_cluster_sessions)",                     // sessions by role
		"roam_cluster_replication_seconds_bucket",                   // replication latency
		"sum by (code) (rate(roam_lb_requests_total",                // balancer codes
		"sum by (le) (rate(roam_lb_request_duration_seconds_bucket", // balancer latency
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no dashboard query contains %q", want)
		}
	}
	if t.Failed() {
		return
	}

	nodes := startNodes(t, 2, sharedStore(t))
	cfg := &lb.Config{
		Policy: "round_robin",
		Secret: "deploy-test-lb-secret",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, n := range nodes.nodes {
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{ID: n.ID, URL: "http://" + n.Addr})
	}
	bal, err := lb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := bal.Start(ctx); err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(bal)
	t.Cleanup(front.Close)
	admin := httptest.NewServer(bal.AdminHandler())
	t.Cleanup(admin.Close)

	// Traffic, so that per-backend, per-code and replication series exist.
	c := newClient(t, front.URL)
	c.call(http.MethodPost, "/login", map[string]string{"username": "grafana", "password": "roam"}, http.StatusOK)
	for range 4 {
		c.call(http.MethodPost, "/api/counter", nil, http.StatusOK)
		c.call(http.MethodGet, "/api/me", nil, http.StatusOK)
	}

	pages := []string{admin.URL + "/metrics"}
	for _, n := range nodes.nodes {
		pages = append(pages, "http://"+n.Addr+"/metrics")
	}
	// Some series appear only after a background pass (the cluster counts
	// sessions by role once a second): scrape until nothing is missing.
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	var missing []string
	err = proc.Poll(pctx, func(ctx context.Context) error {
		exp := exposition{}
		for _, u := range pages {
			page, err := scrape(ctx, u)
			if err != nil {
				return err
			}
			exp.add(page)
		}
		missing = nil
		for _, e := range dash.exprs() {
			for _, p := range exp.problems(e) {
				missing = append(missing, p+" (in "+e+")")
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d names not exposed", len(missing))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the dashboard names what roam does not expose: %v\n%s", err, strings.Join(missing, "\n"))
	}
}

// TestExpositionProblemsCatchesWrongNames keeps the name check honest: a
// misspelt metric, a label the metric lacks and a grouping label no metric
// carries are each reported, and a correct query is not.
func TestExpositionProblemsCatchesWrongNames(t *testing.T) {
	exp := exposition{}
	exp.add("roam_lb_requests_total{backend=\"n1\",code=\"200\"} 3\n" +
		"roam_cluster_replication_seconds_bucket{le=\"0.001\",mode=\"backup\",node=\"n1\"} 1\n")
	for expr, want := range map[string]int{
		`sum by (code) (rate(roam_lb_requests_total[5m]))`:                                          0,
		`histogram_quantile(0.99, sum by (le) (rate(roam_cluster_replication_seconds_bucket[5m])))`: 0,
		`sum(rate(roam_lb_request_total[5m]))`:                                                      1,
		`roam_lb_requests_total{status="200"}`:                                                      1,
		`sum by (route) (roam_lb_requests_total{code=~"5.."})`:                                      1,
		`sum by (instance) (roam_lb_requests_total)`:                                                0,
	} {
		if got := exp.problems(expr); len(got) != want {
			t.Errorf("problems(%s) = %q, want %d", expr, got, want)
		}
	}
}
