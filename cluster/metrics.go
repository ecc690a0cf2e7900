package cluster

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors. They exist (unregistered)
// even without a Registry, so the code never checks.
type metrics struct {
	reg         prometheus.Registerer
	collectors  []prometheus.Collector
	sessions    *prometheus.GaugeVec
	membersG    *prometheus.GaugeVec
	replication prometheus.Histogram
	bytesSent   prometheus.Counter
	bytesRecv   prometheus.Counter
	transfers   *prometheus.CounterVec
	forwards    prometheus.Counter
	failovers   prometheus.Counter
	degraded    prometheus.Counter
	minority    prometheus.Counter
	streams     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, node string, mode Mode) (*metrics, error) {
	cl := prometheus.Labels{"node": node, "mode": string(mode)}
	m := &metrics{
		reg: reg,
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roam_cluster_sessions", Help: "Sessions this node holds, by its role for them (primary, backup, other: held but no longer placed here, tombstone).", ConstLabels: cl,
		}, []string{"role"}),
		membersG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roam_cluster_members", Help: "Live cluster members as this node sees them (itself included), by state.", ConstLabels: cl,
		}, []string{"state"}),
		replication: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roam_cluster_replication_seconds", Help: "Time from a write's local apply to its acknowledgement by every target (async: per batch).", ConstLabels: cl,
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_peer_bytes_sent_total", Help: "Bytes of peer protocol frames sent (requests and answers).", ConstLabels: cl,
		}),
		bytesRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_peer_bytes_received_total", Help: "Bytes of peer protocol frames received.", ConstLabels: cl,
		}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_cluster_transferred_sessions_total", Help: "Sessions moved by state transfer: in (pulled when joining), out (sent to a joiner or a new holder), fetched (asked of a previous holder on a miss).", ConstLabels: cl,
		}, []string{"direction"}),
		forwards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_forwards_total", Help: "Calls forwarded to another member because this node is not the session's primary.", ConstLabels: cl,
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_failovers_total", Help: "Calls this node served as a backup because the primary could not be reached.", ConstLabels: cl,
		}),
		degraded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_degraded_writes_total", Help: "Writes acknowledged with fewer copies than configured (a stand-in missing), or dropped from a full async queue.", ConstLabels: cl,
		}),
		minority: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_minority_total", Help: "Times this node saw fewer than half of the cluster and left placement until it saw enough again (split-brain protection).", ConstLabels: cl,
		}),
		streams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_cluster_write_streams_opened_total", Help: "Write streams this node opened to its peers; one per peer while all is well, a new one after each failure.", ConstLabels: cl,
		}),
	}
	m.collectors = []prometheus.Collector{m.sessions, m.membersG, m.replication, m.bytesSent, m.bytesRecv, m.transfers, m.forwards, m.failovers, m.degraded, m.minority, m.streams}
	for _, d := range []string{"in", "out", "fetched"} {
		m.transfers.WithLabelValues(d)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			if errors.As(err, &are) {
				return nil, fmt.Errorf("cluster: metrics already registered for node %s: %w", node, err)
			}
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return m, nil
}

// unregister removes the collectors, so a node restarted in the same
// process can register again.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

func (m *metrics) setSessions(counts map[string]int) {
	for _, role := range []string{"primary", "backup", "other", "tombstone"} {
		m.sessions.WithLabelValues(role).Set(float64(counts[role]))
	}
}

func (m *metrics) members(v *view) {
	joining, ready := 0, len(v.ready)
	for _, f := range v.future {
		if !containsStr(v.ready, f) {
			joining++
		}
	}
	m.membersG.WithLabelValues("ready").Set(float64(ready))
	m.membersG.WithLabelValues("joining").Set(float64(joining))
	m.membersG.WithLabelValues("all").Set(float64(len(v.peers) + 1))
}
