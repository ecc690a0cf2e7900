package demoapp

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/roamsession/roam/session"
)

// metrics are the App's Prometheus metrics; the names are listed in the
// package documentation.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	logins   *prometheus.CounterVec
}

// latencyBuckets start well below DefBuckets' 5ms: a request against an
// in-memory or loopback store takes tens of microseconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newMetrics(reg prometheus.Registerer, node string, mgr *session.Manager) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_node_http_requests_total",
			Help: "HTTP requests answered, by matched route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roam_node_http_request_duration_seconds",
			Help:    "Time from receiving a request to returning from its handler, by matched route.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roam_node_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_node_logins_total",
			Help: "Login attempts by result: ok, bad_password or invalid (malformed request or username).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "bad_password", "invalid"} {
		m.logins.WithLabelValues(r) // present at 0 before the first attempt
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "roam_node_info",
		Help:        "Always 1; the node label names this node.",
		ConstLabels: prometheus.Labels{"node": node},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.logins, info, newSessionCollector(mgr)} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// The runtime collectors are process-wide: a registry shared with other
	// code may have them already, which is fine.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				return nil, fmt.Errorf("register runtime metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// instrument counts and times every request mux serves. The route label is
// the pattern the mux matched, read after it ran (ServeMux records it on
// the request it was given), so clients cannot mint label values.
func (m *metrics) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status code of a response. Unwrap lets
// http.ResponseController (which the session middleware uses for Flush and
// Hijack) reach the real writer.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// sessionCollector exports a session.Manager's Stats as counters, read at
// scrape time, so the Manager needs no Prometheus dependency of its own.
type sessionCollector struct {
	mgr                                               *session.Manager
	loads, creates, updates, touches, deletes, errors *prometheus.Desc
}

func newSessionCollector(mgr *session.Manager) *sessionCollector {
	return &sessionCollector{
		mgr:     mgr,
		loads:   prometheus.NewDesc("roam_session_loads_total", "Sessions loaded from the store.", nil, nil),
		creates: prometheus.NewDesc("roam_session_creates_total", "Sessions created (including renewed ids).", nil, nil),
		updates: prometheus.NewDesc("roam_session_updates_total", "Session changes saved to the store.", nil, nil),
		touches: prometheus.NewDesc("roam_session_touches_total", "Keep-alive writes that only extended a session's deadline.", nil, nil),
		deletes: prometheus.NewDesc("roam_session_deletes_total", "Session ids deleted (logouts, renewals, expiries).", nil, nil),
		errors:  prometheus.NewDesc("roam_session_errors_total", "Store operations that failed.", nil, nil),
	}
}

func (c *sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.loads, c.creates, c.updates, c.touches, c.deletes, c.errors} {
		ch <- d
	}
}

func (c *sessionCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.mgr.Stats()
	for _, v := range []struct {
		desc *prometheus.Desc
		n    uint64
	}{{c.loads, s.Loads}, {c.creates, s.Creates}, {c.updates, s.Updates}, {c.touches, s.Touches}, {c.deletes, s.Deletes}, {c.errors, s.Errors}} {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, float64(v.n))
	}
}
