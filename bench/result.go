package bench

import (
	"encoding/json"
	"strconv"
	"time"
)

// Result is one run's outcome, the object `roam bench --json` prints.
type Result struct {
	Strategy   string   `json:"strategy"`
	Nodes      int      `json:"nodes"`
	Users      int      `json:"users"`
	DurationS  float64  `json:"duration_s"`
	ThinkMS    float64  `json:"think_ms"`
	WriteRatio float64  `json:"write_ratio"`
	Sessions   int      `json:"idle_sessions,omitempty"`
	Faults     []string `json:"faults"`
	// Error is why the run could not be made (a store server that is not
	// installed, say); the other fields are then empty. Matrix reports
	// such runs instead of stopping.
	Error string `json:"error,omitempty"`

	Requests int `json:"requests"`
	Logins   int `json:"logins"`
	// SessionRequests are the reads and writes that got a verdict: kept,
	// logged out, stale or wrong user.
	SessionRequests  int     `json:"session_requests"`
	Kept             int     `json:"kept"`
	LoggedOut        int     `json:"logged_out"`
	Stale            int     `json:"stale"`
	WrongUser        int     `json:"wrong_user"`
	SessionKeptRatio float64 `json:"session_kept_ratio"`
	// KeptBeforeFault and KeptAfterFault split SessionKeptRatio at the
	// first fault: the steady state, and what the fault did. Both are
	// omitted when there were no faults.
	KeptBeforeFault *float64 `json:"session_kept_ratio_before_fault,omitempty"`
	KeptAfterFault  *float64 `json:"session_kept_ratio_after_fault,omitempty"`
	UsersLoggedOut  int      `json:"users_logged_out"`
	UsersAllKept    int      `json:"users_all_kept"`
	AckedIncrements int      `json:"acked_increments"`
	LostIncrements  int      `json:"lost_increments"`
	Errors5xx       int      `json:"errors_5xx"`
	ErrorsOther     int      `json:"errors_other"`
	// Statuses counts every answer by HTTP status ("0": no answer).
	Statuses map[string]int `json:"statuses"`

	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
	MeanMS float64 `json:"mean_ms"`
	RPS    float64 `json:"rps"`

	RequestsPerNode map[string]int `json:"requests_per_node"`
	// RequestsPerNodeBeforeFault counts the requests sent before the
	// first fault; empty when there were no faults.
	RequestsPerNodeBeforeFault map[string]int `json:"requests_per_node_before_fault,omitempty"`
	// LoadMaxOverMean is the busiest node's requests over the mean, over
	// the whole load and every node the run had (see LoadMaxOverMean).
	LoadMaxOverMean float64 `json:"load_max_over_mean"`
	// LoadBeforeFault is the same before the first fault struck, over
	// the nodes started first: the balance of the undisturbed cluster.
	// It equals LoadMaxOverMean when there are no faults.
	LoadBeforeFault float64          `json:"load_max_over_mean_before_fault"`
	RSSBytesPerNode map[string]int64 `json:"rss_bytes_per_node"`
	RSSMeanBytes    int64            `json:"rss_mean_bytes"`
	// SessionsPerNode is how many sessions each node holds at the end
	// (cluster strategies only: the nodes report it).
	SessionsPerNode map[string]int64 `json:"sessions_per_node,omitempty"`
	// ReplicationBytes are the peer-protocol bytes the nodes sent each
	// other during the load (cluster strategies), summed over every
	// process, killed ones included up to their last sample.
	ReplicationBytes         int64   `json:"replication_bytes"`
	ReplicationBytesPerWrite float64 `json:"replication_bytes_per_write"`
	// StoreRoundTrips are the session Manager's store calls (loads,
	// creates, updates, touches, deletes) during the load: one network
	// round trip each for an external store, a local call otherwise.
	StoreRoundTrips      int64   `json:"store_round_trips"`
	StoreTripsPerRequest float64 `json:"store_round_trips_per_request"`

	// WindowS is the width of the timeline's windows in seconds.
	WindowS     float64      `json:"window_s,omitempty"`
	Timeline    []Window     `json:"timeline,omitempty"`
	FaultEvents []FaultEvent `json:"fault_events,omitempty"`
	// NodeIDs lists every node the run had, in order.
	NodeIDs []string `json:"node_ids"`

	latency Histogram
	records [][]Record
}

// Records returns every user's records, in the order each user sent
// them (index: the user); nil for a Result decoded from JSON.
func (r *Result) Records() [][]Record { return r.records }

// windowS returns the timeline's window width, one second when unknown.
func (r *Result) windowS() float64 {
	if r.WindowS > 0 {
		return r.WindowS
	}
	return 1
}

// Latency returns the run's latency histogram (every answered request).
func (r *Result) Latency() *Histogram { return &r.latency }

// JSON returns r as one line of JSON.
func (r *Result) JSON() []byte {
	b, _ := json.Marshal(r) // only plain fields: cannot fail
	return b
}

// assemble fills a Result from the run's summary and samples.
func assemble(opts Options, s *Summary, elapsed time.Duration, nodes []Node, smp *sampler, events []FaultEvent) *Result {
	r := &Result{
		Strategy: opts.Strategy, Nodes: opts.Nodes, Users: opts.Users,
		DurationS: opts.Duration.Seconds(), ThinkMS: ms(opts.Think), WriteRatio: opts.WriteRatio,
		Sessions: opts.Sessions, Faults: []string{},
		Requests: s.Requests, Logins: s.Logins, SessionRequests: s.Judged(),
		Kept: s.Kept, LoggedOut: s.LoggedOut, Stale: s.Stale, WrongUser: s.WrongUser,
		SessionKeptRatio: s.KeptRatio, UsersLoggedOut: s.UsersLoggedOut, UsersAllKept: s.UsersAllKept,
		AckedIncrements: s.Acked, LostIncrements: s.Lost,
		Errors5xx: s.Errors5xx, ErrorsOther: s.ErrorsOther,
		P50MS: ms(s.Latency.Quantile(0.5)), P90MS: ms(s.Latency.Quantile(0.9)), P99MS: ms(s.Latency.Quantile(0.99)),
		MaxMS: ms(s.Latency.Max()), MeanMS: ms(s.Latency.Mean()),
		RequestsPerNode: s.PerNode, Timeline: s.Timeline, FaultEvents: events,
		RSSBytesPerNode: map[string]int64{},
		latency:         s.Latency,
	}
	for _, f := range opts.Faults {
		r.Faults = append(r.Faults, f.String())
	}
	if elapsed > 0 {
		r.RPS = float64(s.Requests) / elapsed.Seconds()
	}
	for _, n := range nodes {
		r.NodeIDs = append(r.NodeIDs, n.ID)
	}
	r.LoadMaxOverMean = LoadMaxOverMean(s.PerNode, r.NodeIDs)
	r.LoadBeforeFault = LoadMaxOverMean(s.PerNodeBefore, r.NodeIDs[:min(opts.Nodes, len(r.NodeIDs))])
	if len(opts.Faults) > 0 {
		r.RequestsPerNodeBeforeFault = s.PerNodeBefore
		before, after := s.Before.KeptRatio(), s.After.KeptRatio()
		r.KeptBeforeFault, r.KeptAfterFault = &before, &after
	}
	r.Statuses = map[string]int{}
	for code, n := range s.Statuses {
		r.Statuses[strconv.Itoa(code)] = n
	}
	r.WindowS = opts.Window.Seconds()
	rep, calls, usage := smp.totals()
	r.ReplicationBytes, r.StoreRoundTrips = rep, calls
	if s.Acked > 0 {
		r.ReplicationBytesPerWrite = float64(rep) / float64(s.Acked)
	}
	if s.Requests > 0 {
		r.StoreTripsPerRequest = float64(calls) / float64(s.Requests)
	}
	var rssSum int64
	for id, u := range usage {
		if u.RSS > 0 {
			r.RSSBytesPerNode[id] = u.RSS
			rssSum += u.RSS
		}
		if u.Sessions >= 0 {
			if r.SessionsPerNode == nil {
				r.SessionsPerNode = map[string]int64{}
			}
			r.SessionsPerNode[id] = int64(u.Sessions)
		}
	}
	if len(r.RSSBytesPerNode) > 0 {
		r.RSSMeanBytes = rssSum / int64(len(r.RSSBytesPerNode))
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
