package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ErrOptions is returned (wrapped) by Run and Matrix for options that make
// no sense; the message names the field.
var ErrOptions = errors.New("bench: invalid options")

// Defaults for the zero values of Options.
const (
	DefaultNodes          = 3
	DefaultUsers          = 50
	DefaultDuration       = 20 * time.Second
	DefaultThink          = 100 * time.Millisecond
	DefaultWriteRatio     = 0.3
	DefaultStoreDowntime  = 3 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultPassword       = "roam"
	// MaxDuration bounds one run's load: every loop of the bench is
	// bounded in time.
	MaxDuration = time.Hour
	// maxRequestsPerUser bounds each user's loop in count as well, for
	// a think time of zero against a very fast cluster.
	maxRequestsPerUser = 200_000
	// maxPreload bounds Options.Sessions.
	maxPreload = 1_000_000
)

// Options configures a run. The zero value plus a Strategy and a Launcher
// runs 50 users against 3 nodes for 20 s, 30% writes, 100 ms think time,
// no faults.
type Options struct {
	// Strategy names the strategy (see internal/launch): none, sticky,
	// ip-hash, all, backup, redis, redis-sentinel, redis-cluster,
	// memcached, postgres, mysql.
	Strategy string
	// Nodes is how many app nodes to start; DefaultNodes when 0.
	Nodes int
	// Users is how many virtual users run at once; DefaultUsers when 0,
	// at most MaxUsers.
	Users int
	// Duration is how long the load lasts; DefaultDuration when 0, at
	// most MaxDuration.
	Duration time.Duration
	// Think is each user's mean pause between two requests (each pause is
	// uniform in [Think/2, 3·Think/2)); DefaultThink when 0, none when
	// negative.
	Think time.Duration
	// WriteRatio is the fraction of session requests that are writes
	// (POST /api/counter) rather than reads (GET /api/me);
	// DefaultWriteRatio when 0, reads only when negative.
	WriteRatio float64
	// Faults are injected on schedule (see Fault.When).
	Faults []Fault
	// StoreDowntime is how long a store killed by a kill-store fault stays
	// down before it is started again; DefaultStoreDowntime when 0, never
	// restored when negative.
	StoreDowntime time.Duration
	// Sessions idle sessions are created (logins nobody uses again)
	// before the load, so that memory per node shows what holding
	// sessions costs under each strategy. Default none.
	Sessions int
	// Password is the nodes' demo password; DefaultPassword when empty.
	Password string
	// Seed makes the users' random choices repeatable; a random seed
	// when 0.
	Seed uint64
	// RequestTimeout bounds one request; DefaultRequestTimeout when 0.
	RequestTimeout time.Duration
	// Window is the width of the timeline's slices; one second when 0.
	Window time.Duration
	// SampleInterval is how often the nodes' /metrics and RSS are read
	// during the load; one second when 0.
	SampleInterval time.Duration
	// Launcher starts the cluster. Required.
	Launcher Launcher
	// Progress, when set, is called about five times a second during the
	// load, and once when each phase begins. It must return quickly.
	Progress func(Progress)
	// Logger receives the run's own events; slog.Default() when nil.
	Logger *slog.Logger
}

// Progress is a run's state, for a progress display.
type Progress struct {
	Strategy string
	Nodes    int
	// Phase is "starting" (the cluster), "preload", "load" or "stopping".
	Phase    string
	Elapsed  time.Duration
	Duration time.Duration
	// Requests so far, and how many were answered 200, 401, or failed.
	Requests, OK, Unauthorized, Failed int64
	// Faults are the faults that have run so far.
	Faults []FaultEvent
}

func (o *Options) provision() error {
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	switch {
	case o.Think == 0:
		o.Think = DefaultThink
	case o.Think < 0:
		o.Think = 0
	}
	switch {
	case o.WriteRatio == 0:
		o.WriteRatio = DefaultWriteRatio
	case o.WriteRatio < 0:
		o.WriteRatio = 0
	}
	if o.StoreDowntime == 0 {
		o.StoreDowntime = DefaultStoreDowntime
	}
	if o.Password == "" {
		o.Password = DefaultPassword
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Window <= 0 {
		o.Window = time.Second
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, a...)...))
	}
	if o.Strategy == "" {
		bad("Strategy: empty")
	}
	if o.Nodes < 1 || o.Nodes > 32 {
		bad("Nodes: %d, want 1 to 32", o.Nodes)
	}
	if o.Users < 1 || o.Users > MaxUsers {
		bad("Users: %d, want 1 to %d", o.Users, MaxUsers)
	}
	if o.Duration < 0 || o.Duration > MaxDuration {
		bad("Duration: %v, want up to %v", o.Duration, MaxDuration)
	}
	if o.WriteRatio > 1 {
		bad("WriteRatio: %v, want 0 to 1", o.WriteRatio)
	}
	if o.Sessions < 0 || o.Sessions > maxPreload {
		bad("Sessions: %d, want 0 to %d", o.Sessions, maxPreload)
	}
	if o.Launcher == nil {
		bad("Launcher: nil")
	}
	for _, f := range o.Faults {
		if f.Kind.takesNode() && f.Node == "" {
			bad("Faults: %s without a node", f.Kind)
		}
		if w := f.When(o.Duration); w > o.Duration {
			bad("Faults: %s is after the end of the load (%v)", f, o.Duration)
		}
	}
	return errors.Join(errs...)
}

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

// Run starts a cluster for opts.Strategy through opts.Launcher, drives
// opts.Users virtual users against its balancer for opts.Duration while
// injecting opts.Faults on schedule, stops everything it started, and
// returns what it measured. Every user has its own cookie jar and its own
// client address (UserAddr), logs in, then reads and writes one request
// at a time, and logs in again whenever it finds itself logged out.
//
// Run fails with an error wrapping ErrOptions for bad options, with the
// launcher's error (wrapped) when the cluster does not start, and with
// ctx's error when ctx ends before the load does. A fault that fails does
// not fail the run: it is recorded in Result.FaultEvents.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.provision(); err != nil {
		return nil, err
	}
	log := opts.Logger.With("strategy", opts.Strategy, "nodes", opts.Nodes)
	progress := func(p Progress) {
		if opts.Progress != nil {
			p.Strategy, p.Nodes, p.Duration = opts.Strategy, opts.Nodes, opts.Duration
			opts.Progress(p)
		}
	}
	progress(Progress{Phase: "starting"})
	cl, err := opts.Launcher.Launch(ctx, Setup{Strategy: opts.Strategy, Nodes: opts.Nodes})
	if err != nil {
		return nil, fmt.Errorf("bench: start %s with %d nodes: %w", opts.Strategy, opts.Nodes, err)
	}
	defer func() {
		progress(Progress{Phase: "stopping"})
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := cl.Stop(sctx); err != nil {
			log.Warn("stop cluster", "error", err)
		}
	}()
	base := cl.URL()
	if u, err := url.Parse(base); err != nil || u.Host == "" {
		return nil, fmt.Errorf("bench: the launcher's balancer URL %q is not a URL", base)
	}
	if err := checkClientAddr(ctx, base); err != nil {
		return nil, err
	}
	if opts.Sessions > 0 {
		progress(Progress{Phase: "preload"})
		if err := preload(ctx, base, opts.Password, opts.Sessions, opts.RequestTimeout); err != nil {
			return nil, err
		}
	}

	smp := newSampler(cl)
	smp.sample(ctx, true)

	lv := &live{}
	users := make([]*user, opts.Users)
	for i := range users {
		users[i] = &user{
			idx: i, name: userName(i), base: base, password: opts.Password,
			client:     newUserClient(UserAddr(i), opts.RequestTimeout),
			rng:        rand.New(rand.NewPCG(opts.Seed, uint64(i))),
			live:       lv,
			think:      opts.Think,
			writeRatio: opts.WriteRatio,
			maxReqs:    maxRequestsPerUser,
		}
	}
	var (
		evMu   sync.Mutex
		events []FaultEvent
	)
	faultEvents := func() []FaultEvent {
		evMu.Lock()
		defer evMu.Unlock()
		return slices.Clone(events)
	}

	start := time.Now()
	end := start.Add(opts.Duration)
	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	bgWG.Go(func() { smp.loop(bg, opts.SampleInterval) })
	bgWG.Go(func() {
		runFaults(bg, cl, schedule(opts.Faults, opts.Duration, opts.StoreDowntime), start, opts.Duration, func(ev FaultEvent) {
			log.Info("fault", "fault", ev.Fault, "at", ev.AtS, "took", ev.DoneS-ev.AtS, "error", ev.Error)
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
		})
	})
	if opts.Progress != nil {
		bgWG.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case <-t.C:
					progress(Progress{Phase: "load", Elapsed: time.Since(start),
						Requests: lv.requests.Load(), OK: lv.ok.Load(), Unauthorized: lv.unauthorized.Load(), Failed: lv.failed.Load(),
						Faults: faultEvents()})
				}
			}
		})
	}
	progress(Progress{Phase: "load"})
	var uwg sync.WaitGroup
	for _, u := range users {
		u.start = start
		uwg.Go(func() { u.run(ctx, end) })
	}
	uwg.Wait()
	elapsed := time.Since(start)
	stopBG()
	bgWG.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	smp.sample(ctx, false)

	byUser := make([][]Record, len(users))
	for i, u := range users {
		byUser[i] = u.recs
	}
	var cut time.Duration
	if sched := schedule(opts.Faults, opts.Duration, opts.StoreDowntime); len(sched) > 0 {
		cut = max(sched[0].When(opts.Duration), time.Nanosecond)
	}
	res := assemble(opts, Summarize(byUser, opts.Window, opts.Duration, cut), elapsed, cl.Nodes(), smp, faultEvents())
	res.records = byUser
	return res, nil
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

// checkClientAddr makes sure this machine lets a socket bind the virtual
// users' client addresses: it does on Linux, where all of 127.0.0.0/8 is
// the loopback interface, and does not on systems that route only
// 127.0.0.1.
func checkClientAddr(ctx context.Context, base string) error {
	u, _ := url.Parse(base)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: UserAddr(0)}, Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("bench: connect from the virtual users' address %s (each user needs its own loopback address so that ip_hash means something): %w", UserAddr(0), err)
	}
	return c.Close()
}

// preload logs in n users that never come back, eight at a time, so that
// the nodes hold n sessions more. The first failure stops it.
func preload(ctx context.Context, base, password string, n int, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := idleLogin(ctx, client, base, password, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("bench: create idle sessions: %w", err)
	}
	return ctx.Err()
}

func idleLogin(ctx context.Context, c *http.Client, base, password string, i int) error {
	body, _ := json.Marshal(loginRequest{Username: fmt.Sprintf("idle%06d", i), Password: password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login answered %s", resp.Status)
	}
	return nil
}
