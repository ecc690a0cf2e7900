package lb

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NodeStatus is one backend as GET /api/nodes reports it.
type NodeStatus struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	URL   string `json:"url"`
	PID   int    `json:"pid,omitempty"`
	State string `json:"state"`
	// Healthy is the active checks' verdict; Ejected is true during a
	// passive cool-down.
	Healthy bool `json:"healthy"`
	Ejected bool `json:"ejected"`
	// Active requests in flight; Requests answered; Failures of attempts.
	Active   int64             `json:"active"`
	Requests uint64            `json:"requests"`
	Failures uint64            `json:"failures"`
	Codes    map[string]uint64 `json:"codes,omitempty"` // "2xx": n, …
	// LastError is the last failed check or attempt, when there was one.
	LastError string `json:"last_error,omitempty"`
	// LastCheck is when the last active check ran (RFC 3339).
	LastCheck string `json:"last_check,omitempty"`
	// DrainUntil is when a draining backend stops serving pinned clients.
	DrainUntil string `json:"drain_until,omitempty"`
}

// Nodes returns the status of every backend, in configuration order.
func (l *LB) Nodes() []NodeStatus {
	now := nowNano()
	all := l.rt.Load().all
	out := make([]NodeStatus, 0, len(all))
	for _, b := range all {
		st := b.stateAt(now)
		ns := NodeStatus{
			ID: b.id, Addr: b.host, URL: b.url.String(), PID: int(b.pid.Load()),
			State: st.String(), Healthy: b.checkUp.Load(), Ejected: now < b.ejectedUntil.Load(),
			Active: b.active.Load(), Requests: b.requests.Load(), Failures: b.failures.Load(),
		}
		var classes [6]uint64
		for c := range b.codes {
			classes[c/100] += b.codes[c].Load()
		}
		for i := 1; i < 6; i++ {
			if classes[i] > 0 {
				if ns.Codes == nil {
					ns.Codes = map[string]uint64{}
				}
				ns.Codes[string(rune('0'+i))+"xx"] = classes[i]
			}
		}
		if p := b.lastErr.Load(); p != nil {
			ns.LastError = *p
		}
		if t := b.checked.Load(); t != 0 {
			ns.LastCheck = time.Unix(0, t).UTC().Format(time.RFC3339Nano)
		}
		if st == StateDraining {
			ns.DrainUntil = time.Unix(0, b.drainUntil.Load()).UTC().Format(time.RFC3339Nano)
		}
		out = append(out, ns)
	}
	return out
}

// AdminHandler returns the admin API's mux, the one Serve and Run serve
// on the admin listener. A program may register more routes on it before
// serving (the demo adds its dashboard and kill/start endpoints); it must
// not register the balancer's own patterns:
//
//	GET  /healthz                   200 "ok", 503 while the balancer drains
//	GET  /metrics                   Prometheus metrics of this balancer only
//	GET  /api/nodes                 JSON list of NodeStatus
//	GET  /api/nodes/{id}            one NodeStatus, 404 when unknown
//	POST /api/nodes/{id}/drain      start draining (?timeout=30s optional)
//	POST /api/nodes/{id}/undrain    back in service
//	DELETE /api/nodes/{id}          remove the backend
func (l *LB) AdminHandler() *http.ServeMux { return l.admin }

func (l *LB) newAdminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if l.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(l.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.Nodes())
	})
	mux.HandleFunc("GET /api/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range l.Nodes() {
			if n.ID == r.PathValue("id") {
				writeJSON(w, http.StatusOK, n)
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown backend"})
	})
	// The admin listener is loopback by default, which a web page the
	// operator visits can still reach: a cross-site form POST needs no
	// CORS preflight. The routes that change state refuse browser
	// requests from another origin (403); curl and scripts, which send no
	// Origin or Sec-Fetch-Site, are unaffected.
	cop := http.NewCrossOriginProtection()
	mux.Handle("POST /api/nodes/{id}/drain", cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var timeout time.Duration
		if s := r.URL.Query().Get("timeout"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "timeout: want a duration like 30s"})
				return
			}
			timeout = d
		}
		l.adminResult(w, r, l.Drain(r.PathValue("id"), timeout))
	})))
	mux.Handle("POST /api/nodes/{id}/undrain", cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.adminResult(w, r, l.Undrain(r.PathValue("id")))
	})))
	mux.Handle("DELETE /api/nodes/{id}", cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.adminResult(w, r, l.RemoveBackend(r.PathValue("id")))
	})))
	if l.rt.Load().cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (l *LB) adminResult(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case err == nil:
		for _, n := range l.Nodes() {
			if n.ID == r.PathValue("id") {
				writeJSON(w, http.StatusOK, n)
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
	case errors.Is(err, ErrUnknownBackend):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
