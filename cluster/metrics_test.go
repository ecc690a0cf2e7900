package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/roamsession/roam/session"
)

// metricValue returns the value of the metric family name with label=value on
// reg, summed.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			switch {
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestMetricsCountRolesMembersAndTraffic(t *testing.T) {
	regs := map[string]*prometheus.Registry{}
	c := newTCluster(t, ModeBackup, 3, func(cfg *Config) {
		r := prometheus.NewRegistry()
		regs[cfg.NodeID] = r
		cfg.Registry = r
	})
	const n = 30
	for i := range n {
		if err := c.node(c.ids()[i%3]).Apply(ctxT(t), session.NewID(), newDelta("i", strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(role string) float64 {
		s := 0.0
		for _, id := range c.ids() {
			s += metricValue(t, regs[id], "roam_cluster_sessions", "role", role)
		}
		return s
	}
	waitFor(t, 10*time.Second, "every session counted once as primary and once as backup", func() bool {
		return sum("primary") == n && sum("backup") == n
	})
	for _, id := range c.ids() {
		r := regs[id]
		if got := metricValue(t, r, "roam_cluster_members", "state", "ready"); got != 3 {
			t.Errorf("%s: roam_cluster_members{state=ready} = %v, want 3", id, got)
		}
		if metricValue(t, r, "roam_cluster_peer_bytes_sent_total", "", "") == 0 || metricValue(t, r, "roam_cluster_peer_bytes_received_total", "", "") == 0 {
			t.Errorf("%s: no peer bytes counted", id)
		}
	}
	writes := 0.0
	for _, id := range c.ids() {
		writes += metricValue(t, regs[id], "roam_cluster_replication_seconds", "", "")
	}
	if writes < n {
		t.Errorf("replication histogram counted %v writes, want at least %d", writes, n)
	}
}
