package dashboard

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// State is what the page shows at one moment; GET /api/dashboard and the
// event stream send it as JSON.
type State struct {
	Time     time.Time  `json:"time"`
	Strategy Strategy   `json:"strategy"`
	AppURL   string     `json:"app_url,omitempty"`
	Control  bool       `json:"control"`
	Interval float64    `json:"interval_seconds"`
	Nodes    []NodeView `json:"nodes"`
	// RPS is the balancer's total request rate.
	RPS float64 `json:"rps"`
}

// NodeView is a Node with what the dashboard measured.
type NodeView struct {
	Node
	// Alive is true while the node's process runs (or, when the program
	// does not report processes, while the balancer does not see it down).
	Alive bool `json:"alive"`
	// RPS is the rate of requests the balancer had answered by the node
	// over the last interval, smoothed.
	RPS float64 `json:"rps"`
	// Sessions the node holds, nil when unknown: the node is down, keeps
	// no sessions (an external store), or does not export a count.
	Sessions *Sessions `json:"sessions,omitempty"`
	// SessionsText says it for people: "3 primary · 2 backup", "≈4",
	// "lost with the process", "in redis".
	SessionsText string `json:"sessions_text"`
}

// Sessions counts the sessions one node holds.
type Sessions struct {
	Held int64 `json:"held"`
	// Roles is true when the store reports primary and backup copies
	// (the cluster store); Held also counts copies that are no longer
	// placed on the node and are about to move (role "other").
	Roles   bool  `json:"roles,omitempty"`
	Primary int64 `json:"primary,omitempty"`
	Backup  int64 `json:"backup,omitempty"`
	// Estimated is true when Held is sessions created minus sessions
	// deleted on the node (the memory store exports no count), which
	// ignores sessions that expired.
	Estimated bool `json:"estimated,omitempty"`
}

// rateSmoothing weighs the newest interval's rate against the smoothed
// one, so the numbers on the page do not flicker with every tick.
const rateSmoothing = 0.6

// maxMetricsBytes bounds one node's /metrics body.
const maxMetricsBytes = 4 << 20

// sampler turns reports of nodes into States: rates from the balancer's
// counters, session counts from each live node's /metrics.
type sampler struct {
	client *http.Client
	holds  string
	server string // the external server, for HeldByServer

	mu   sync.Mutex
	prev map[string]rateSample
}

type rateSample struct {
	at       time.Time
	requests uint64
	rps      float64
}

func newSampler(client *http.Client, holds, server string) *sampler {
	return &sampler{client: client, holds: holds, server: server, prev: map[string]rateSample{}}
}

// sample builds the state for nodes at now. Nodes whose metrics cannot be
// read get nil Sessions; sample itself does not fail.
func (s *sampler) sample(ctx context.Context, nodes []Node, now time.Time) State {
	st := State{Time: now.UTC(), Nodes: make([]NodeView, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		v := &st.Nodes[i]
		v.Node = n
		v.Alive = alive(n)
		v.RPS = s.rate(n, now)
		if !v.Alive {
			// Nothing more reaches a dead node; the smoothing would show
			// its last requests fading out for seconds.
			v.RPS = 0
		}
		st.RPS += v.RPS
		if v.Alive && n.URL != "" && s.holds != HeldByServer {
			wg.Go(func() { v.Sessions = s.sessions(ctx, n.URL) })
		}
	}
	wg.Wait()
	for i := range st.Nodes {
		st.Nodes[i].SessionsText = s.sessionsText(&st.Nodes[i])
	}
	st.RPS = round1(st.RPS)
	return st
}

// sessionsText describes v's sessions in a few words.
func (s *sampler) sessionsText(v *NodeView) string {
	switch {
	case s.holds == HeldByServer:
		if s.server != "" {
			return "none: all in " + s.server
		}
		return "none: all in the store"
	case !v.Alive && s.holds == HeldByNode:
		return "lost with the process"
	case v.Sessions == nil:
		return "—"
	case v.Sessions.Roles:
		text := fmt.Sprintf("%d primary · %d backup", v.Sessions.Primary, v.Sessions.Backup)
		if other := v.Sessions.Held - v.Sessions.Primary - v.Sessions.Backup; other > 0 {
			// Held but no longer placed here: on its way elsewhere.
			text += fmt.Sprintf(" · %d other", other)
		}
		return text
	case v.Sessions.Estimated:
		return fmt.Sprintf("≈%d", v.Sessions.Held)
	}
	return strconv.FormatInt(v.Sessions.Held, 10)
}

func alive(n Node) bool {
	switch n.Process {
	case "":
		return n.State != "down"
	case "running", "starting":
		return true
	}
	return false
}

// rate returns n's smoothed request rate and remembers this sample.
func (s *sampler) rate(n Node, now time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.prev[n.ID]
	cur := rateSample{at: now, requests: n.Requests}
	if ok {
		cur.rps = prev.rps
		if dt := now.Sub(prev.at).Seconds(); dt > 0.05 {
			var inst float64
			if n.Requests >= prev.requests { // a counter reset reads as 0
				inst = float64(n.Requests-prev.requests) / dt
			}
			cur.rps = rateSmoothing*inst + (1-rateSmoothing)*prev.rps
			if cur.rps < 0.05 {
				cur.rps = 0
			}
		} else {
			cur = prev // too soon (a poke right after a tick): keep the old window
		}
	}
	s.prev[n.ID] = cur
	return round1(cur.rps)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// sessions reads base/metrics and counts the sessions the node holds.
func (s *sampler) sessions(ctx context.Context, base string) *Sessions {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	fams, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil
	}
	return countSessions(fams)
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("dashboard: parse metrics: %w", err)
	}
	return fams, nil
}

// heldGauges are the gauges a store may export for the sessions a node
// holds, with a "role" label (primary, backup) where the store has roles.
var heldGauges = []string{"roam_cluster_sessions", "roam_store_sessions"}

// countSessions finds the sessions held in a node's metrics: a store's
// gauge when it exports one, else the session manager's creates minus
// deletes, an estimate that is right for a memory store until sessions
// start to expire.
func countSessions(fams map[string]*dto.MetricFamily) *Sessions {
	for _, name := range heldGauges {
		f, ok := fams[name]
		if !ok {
			continue
		}
		out := &Sessions{}
		for _, m := range f.GetMetric() {
			v := int64(metricValue(m))
			switch labelValue(m, "role") {
			case "tombstone":
				continue // a deletion remembered, not a session
			case "primary":
				out.Roles = true
				out.Primary += v
			case "backup":
				out.Roles = true
				out.Backup += v
			}
			out.Held += v
		}
		return out
	}
	creates, ok1 := fams["roam_session_creates_total"]
	deletes, ok2 := fams["roam_session_deletes_total"]
	if !ok1 || !ok2 {
		return nil
	}
	held := int64(sumValues(creates)) - int64(sumValues(deletes))
	return &Sessions{Held: max(held, 0), Estimated: true}
}

func sumValues(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		sum += metricValue(m)
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
