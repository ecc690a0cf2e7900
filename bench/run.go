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
