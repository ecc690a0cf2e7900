package lb

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds one balancer's Prometheus metrics in a registry of its
// own, so that several balancers in one process (tests, the demo) never
// share counters. Per-backend counters live as atomics on the Backend and
// are read at scrape time by a collector: the hot path pays an atomic add,
// not a label lookup.
type metrics struct {
	reg *prometheus.Registry

	latency        *prometheus.HistogramVec
	breaks         *prometheus.CounterVec
	cookieRejects  *prometheus.CounterVec
	retries        *prometheus.CounterVec
	budgetExceeded prometheus.Counter
	noBackend      prometheus.Counter
	proxyErrors    *prometheus.CounterVec
	reloads        *prometheus.CounterVec

	breakCounters map[string]prometheus.Counter
}

func newMetrics(l *LB) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "roam_lb_request_duration_seconds",
		Help:    "Time from receiving a request to the end of its response, by backend that answered.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"backend"})
	m.breaks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_lb_stickiness_breaks_total",
		Help: "Requests pinned by the sticky cookie that had to go to another backend, by reason (down, drained, failed, removed).",
	}, []string{"reason"})
	m.cookieRejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_lb_sticky_cookie_rejected_total",
		Help: "Sticky cookies ignored because they did not verify (invalid) or had expired.",
	}, []string{"reason"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_lb_retries_total",
		Help: "Attempts retried on another backend, by reason (connect, reset, status).",
	}, []string{"reason"})
	m.budgetExceeded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roam_lb_retry_budget_exhausted_total",
		Help: "Retries not made because the retry budget was spent.",
	})
	m.noBackend = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roam_lb_no_backend_total",
		Help: "Requests answered 503 because no backend was available.",
	})
	m.proxyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_lb_proxy_errors_total",
		Help: "Requests the balancer answered itself with an error, by kind.",
	}, []string{"kind"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roam_lb_config_reloads_total",
		Help: "Configuration reloads, by result.",
	}, []string{"result"})
	m.breakCounters = map[string]prometheus.Counter{}
	for _, r := range []string{"down", "drained", "failed", "removed"} {
		m.breakCounters[r] = m.breaks.WithLabelValues(r)
	}
	for _, r := range []string{"invalid", "expired"} {
		m.cookieRejects.WithLabelValues(r)
	}
	for _, r := range []string{"connect", "reset", "status"} {
		m.retries.WithLabelValues(r)
	}
	m.reg.MustRegister(m.latency, m.breaks, m.cookieRejects, m.retries, m.budgetExceeded,
		m.noBackend, m.proxyErrors, m.reloads, newBackendCollector(l),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) stickinessBreak(reason string) {
	if m == nil {
		return
	}
	m.breakCounters[reason].Inc()
}

func (m *metrics) cookieRejected(reason string) {
	if m == nil {
		return
	}
	m.cookieRejects.WithLabelValues(reason).Inc()
}

// backendCollector reads the per-backend atomics at scrape time.
type backendCollector struct {
	l                                          *LB
	requests, active, state, failures, transit *prometheus.Desc
}

func newBackendCollector(l *LB) *backendCollector {
	return &backendCollector{
		l: l,
		requests: prometheus.NewDesc("roam_lb_requests_total",
			"Responses sent, by backend that answered and status code.", []string{"backend", "code"}, nil),
		active: prometheus.NewDesc("roam_lb_active_requests",
			"Requests in flight, by backend.", []string{"backend"}, nil),
		state: prometheus.NewDesc("roam_lb_backend_state",
			"1 for the backend's current state (up, down, draining), 0 for the others.", []string{"backend", "state"}, nil),
		failures: prometheus.NewDesc("roam_lb_backend_failures_total",
			"Attempts that failed to get a response from the backend.", []string{"backend"}, nil),
		transit: prometheus.NewDesc("roam_lb_health_transitions_total",
			"Health transitions of the backend, by the state entered.", []string{"backend", "to"}, nil),
	}
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.active
	ch <- c.state
	ch <- c.failures
	ch <- c.transit
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	now := nowNano()
	for _, b := range c.l.rt.Load().all {
		for code := range b.codes {
			if n := b.codes[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), b.id, strconv.Itoa(code))
			}
		}
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(b.active.Load()), b.id)
		st := b.stateAt(now)
		for _, s := range []State{StateUp, StateDown, StateDraining} {
			v := 0.0
			if s == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, b.id, s.String())
		}
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(b.failures.Load()), b.id)
		ch <- prometheus.MustNewConstMetric(c.transit, prometheus.CounterValue, float64(b.toUp.Load()), b.id, "up")
		ch <- prometheus.MustNewConstMetric(c.transit, prometheus.CounterValue, float64(b.toDown.Load()), b.id, "down")
	}
}
