package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roamsession/roam/bench"
	"github.com/roamsession/roam/session"
)

// sessionCookie is the demo app's session cookie (session.DefaultCookieName).
const sessionCookie = "roam_session"

// Defaults for the zero values of LoadOptions.
const (
	DefaultUsers          = 40
	DefaultThink          = 40 * time.Millisecond
	DefaultWriteRatio     = 0.4
	DefaultLogoutRatio    = 0.02
	DefaultProbeRatio     = 0.05
	DefaultRequestTimeout = 8 * time.Second
	// MaxUsers bounds LoadOptions.Users.
	MaxUsers = 2000
	// maxRequestsPerUser bounds each user's loop in count as well as in
	// time.
	maxRequestsPerUser = 1_000_000
	// deadPerUser is how many of its logged-out session ids a user keeps
	// to replay.
	deadPerUser = 8
)

// LoadOptions configures the users a Load runs. The zero value runs
// DefaultUsers users, 40% writes, 2% logouts, 5% replays of logged-out
// cookies, 40 ms think time, a random seed.
type LoadOptions struct {
	Users int
	// Think is each user's mean pause between requests (each pause is
	// uniform in [Think/2, 3·Think/2)); DefaultThink when zero, none when
	// negative.
	Think time.Duration
	// WriteRatio, LogoutRatio and ProbeRatio are the shares of a
	// logged-in user's requests that increment the counter, log out, or
	// replay one of the user's logged-out session ids (a probe, which must
	// be refused); the rest read. Zero means the default, negative none.
	WriteRatio, LogoutRatio, ProbeRatio float64
	// Seed makes the users' choices repeatable; random when zero.
	Seed uint64
	// RequestTimeout bounds one request; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	// Password is the nodes' demo password; "roam" when empty.
	Password string
}

func (o *LoadOptions) provision() {
	if o.Users <= 0 {
		o.Users = DefaultUsers
	}
	o.Users = min(o.Users, MaxUsers)
	switch {
	case o.Think == 0:
		o.Think = DefaultThink
	case o.Think < 0:
		o.Think = 0
	}
	ratio := func(v *float64, def float64) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = 0
		}
	}
	ratio(&o.WriteRatio, DefaultWriteRatio)
	ratio(&o.LogoutRatio, DefaultLogoutRatio)
	ratio(&o.ProbeRatio, DefaultProbeRatio)
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Password == "" {
		o.Password = "roam"
	}
}

// The kinds of Violation: each is something that must never happen.
const (
	// ViolationWrongUser: an answer carried another user's session.
	ViolationWrongUser = "wrong-user"
	// ViolationIDReissued: a session id the server had issued before (to
	// anyone) was issued again.
	ViolationIDReissued = "id-reissued"
	// ViolationFixation: a login kept the session id the client came
	// with.
	ViolationFixation = "fixation"
	// ViolationResurrected: a session id that had been logged out worked
	// again.
	ViolationResurrected = "resurrected"
	// ViolationPhantom: a counter above the number of increments the user
	// ever sent since logging in: data from elsewhere, or a write applied
	// twice.
	ViolationPhantom = "phantom-increment"
)

// Violation is one broken invariant, as a user saw it.
type Violation struct {
	Kind   string
	User   string
	At     time.Duration // since the load started
	Node   string        // X-Roam-Node of the answer, when there was one
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: user %s at %v on %q: %s", v.Kind, v.User, v.At.Round(time.Millisecond), v.Node, v.Detail)
}

// DeadCookie is a session id whose logout was acknowledged.
type DeadCookie struct {
	User string
	ID   string
	At   time.Duration // when the logout was answered
}

// Load is a set of users driving a cluster through its balancer. Create
// it with StartLoad and end it with Stop.
type Load struct {
	opts  LoadOptions
	base  string
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	users []*vuser

	stopOnce sync.Once
	report   *Report

	mu         sync.Mutex
	issued     map[string]int // session id → user index
	violations []Violation
	dead       []DeadCookie
	window     bench.Histogram
	winCount   [3]int64 // ok, unauthorized, failed since the last TakeWindow

	loggedIn                       atomic.Int64
	requests, probes, conclusive   atomic.Int64
	logouts, logoutsAcked, aborted atomic.Int64
}

// StartLoad starts opts.Users users against the cluster's balancer. Each
// logs in, then reads, writes, logs out and replays its logged-out
// session ids at random, one request at a time, and logs in again
// whenever it finds itself logged out. Every answer is checked against the
// invariants as it arrives (see Violation).
func StartLoad(c *Cluster, opts LoadOptions) *Load {
	opts.provision()
	l := &Load{opts: opts, base: c.URL(), start: time.Now(), stop: make(chan struct{}), issued: map[string]int{}}
	for i := range opts.Users {
		u := &vuser{
			l: l, idx: i, name: "u" + strconv.Itoa(i),
			rng: rand.New(rand.NewPCG(opts.Seed, uint64(i))),
			client: &http.Client{
				Timeout: opts.RequestTimeout,
				Transport: &http.Transport{
					Proxy:               nil, // loopback only, never a proxy from the environment
					MaxIdleConnsPerHost: 2,
					IdleConnTimeout:     30 * time.Second,
					DisableCompression:  true,
				},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
		}
		l.users = append(l.users, u)
		l.wg.Go(u.run)
	}
	return l
}

// Elapsed returns the time since the load started: the clock of
// Violation.At and of the records' At.
func (l *Load) Elapsed() time.Duration { return time.Since(l.start) }

// Records returns every user's records, index: the user, once Stop has
// returned (nil before).
func (l *Load) Records() [][]bench.Record {
	if l.report == nil {
		return nil
	}
	out := make([][]bench.Record, len(l.users))
	for i, u := range l.users {
		out[i] = u.recs
	}
	return out
}

// IssuedIDs returns every session id the users were issued so far.
func (l *Load) IssuedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.issued))
	for id := range l.issued {
		out = append(out, id)
	}
	return out
}

// LoggedIn returns how many users are logged in now.
func (l *Load) LoggedIn() int { return int(l.loggedIn.Load()) }

// Requests returns how many requests the users have sent.
func (l *Load) Requests() int64 { return l.requests.Load() }

// Window is what the users saw since the previous TakeWindow.
type Window struct {
	Latency                 bench.Histogram
	OK, Unauthorized, Error int64
}

// TakeWindow returns the latencies and outcomes since the previous call
// (or the start) and starts a new window.
func (l *Load) TakeWindow() Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := Window{Latency: l.window, OK: l.winCount[0], Unauthorized: l.winCount[1], Error: l.winCount[2]}
	l.window, l.winCount = bench.Histogram{}, [3]int64{}
	return w
}

// Violations returns the violations seen so far.
func (l *Load) Violations() []Violation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Violation(nil), l.violations...)
}

// Report is what a Load saw, judged.
type Report struct {
	Users    int
	Duration time.Duration
	// Summary judges every user's logins, reads and writes with bench's
	// rules: kept, logged out, stale, wrong user, and the acknowledged
	// increments later answers did not show (Lost).
	Summary    *bench.Summary
	Violations []Violation
	// Logouts were attempted, LogoutsAcked answered 200; Probes replayed
	// logged-out ids, Conclusive of them got a 401 or a 200 (the rest
	// failed and say nothing).
	Logouts, LogoutsAcked, Probes, Conclusive int64
	// Aborted counts requests cut short by Stop (not judged).
	Aborted int64
	Dead    []DeadCookie
}

// Stop tells every user to finish: each completes the request it is
// sending, then, when logged in, reads its session once more so that every
// acknowledged increment is checked. It returns once all users are done.
// Later calls return the same report.
func (l *Load) Stop() *Report {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		byUser := make([][]bench.Record, len(l.users))
		for i, u := range l.users {
			byUser[i] = u.recs
			u.client.CloseIdleConnections()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.report = &Report{
			Users:        len(l.users),
			Duration:     time.Since(l.start),
			Summary:      bench.Summarize(byUser, 0, 0, 0),
			Violations:   append([]Violation(nil), l.violations...),
			Logouts:      l.logouts.Load(),
			LogoutsAcked: l.logoutsAcked.Load(),
			Probes:       l.probes.Load(),
			Conclusive:   l.conclusive.Load(),
			Aborted:      l.aborted.Load(),
			Dead:         append([]DeadCookie(nil), l.dead...),
		}
	})
	return l.report
}

func (l *Load) violate(v Violation) {
	l.mu.Lock()
	l.violations = append(l.violations, v)
	l.mu.Unlock()
}

// vuser is one user. Only its own goroutine touches its fields.
type vuser struct {
	l      *Load
	idx    int
	name   string
	rng    *rand.Rand
	client *http.Client

	cookie           string // the session id held now, "" for none
	loggedIn         bool
	writesSinceLogin int
	recs             []bench.Record
	dead             []string
}

func (u *vuser) stopped() bool {
	select {
	case <-u.l.stop:
		return true
	default:
		return false
	}
}

func (u *vuser) run() {
	defer u.setLoggedIn(false)
	// Spread the first logins over the first think time.
	if !u.pause(time.Duration(u.rng.Int64N(int64(u.l.opts.Think) + 1))) {
		return
	}
	o := u.l.opts
	for len(u.recs) < maxRequestsPerUser && !u.stopped() {
		if !u.loggedIn {
			u.login()
		} else {
			r := u.rng.Float64()
			switch {
			case r < o.LogoutRatio:
				u.logout()
			case r < o.LogoutRatio+o.ProbeRatio && len(u.dead) > 0:
				u.probe()
			case r < o.LogoutRatio+o.ProbeRatio+o.WriteRatio:
				u.access(bench.KindWrite)
			default:
				u.access(bench.KindRead)
			}
		}
		if !u.pause(u.jitter()) {
			break
		}
	}
	if u.loggedIn {
		u.access(bench.KindRead)
	}
}

func (u *vuser) setLoggedIn(v bool) {
	if v != u.loggedIn {
		if v {
			u.l.loggedIn.Add(1)
		} else {
			u.l.loggedIn.Add(-1)
		}
	}
	u.loggedIn = v
}

func (u *vuser) jitter() time.Duration {
	t := u.l.opts.Think
	if t <= 0 {
		return 0
	}
	return t/2 + time.Duration(u.rng.Int64N(int64(t)))
}

// pause waits d; false when the load is stopping.
func (u *vuser) pause(d time.Duration) bool {
	if d <= 0 {
		return !u.stopped()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-u.l.stop:
		return false
	case <-t.C:
		return true
	}
}

// answer is one response as a user saw it.
type answer struct {
	status int // 0: no response
	node   string
	body   []byte
	setID  *string // the session id the response set; "" when it cleared it
	at     time.Duration
	took   time.Duration
}

// send sends one request with cookie (when not "") and reads the answer.
// It never follows redirects and never retries.
func (u *vuser) send(method, path, cookie string, body []byte) answer {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The stop signal does not cancel requests: a user finishes the one
	// it is sending, so its verdict is known. The client timeout bounds it.
	req, err := http.NewRequest(method, u.l.base+path, rd)
	if err != nil {
		panic(fmt.Sprintf("chaos: request %s %s: %v", method, path, err)) // only a malformed base URL
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", sessionCookie+"="+cookie)
	}
	sent := time.Now()
	a := answer{at: sent.Sub(u.l.start)}
	resp, err := u.client.Do(req)
	if err == nil {
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		a.status = resp.StatusCode
		a.node = resp.Header.Get("X-Roam-Node")
		if err != nil {
			a.status = 0 // a torn answer is no answer
		}
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie {
				v := c.Value
				if c.MaxAge < 0 {
					v = ""
				}
				a.setID = &v
			}
		}
	}
	a.took = time.Since(sent)
	u.l.requests.Add(1)
	u.l.mu.Lock()
	switch {
	case a.status == http.StatusOK:
		u.l.winCount[0]++
	case a.status == http.StatusUnauthorized:
		u.l.winCount[1]++
	default:
		u.l.winCount[2]++
	}
	if a.status != 0 {
		u.l.window.Record(a.took)
	}
	u.l.mu.Unlock()
	return a
}

// takeCookie applies the answer's Set-Cookie to the user's cookie and
// checks a newly issued id was never issued before.
func (u *vuser) takeCookie(a answer, presented string) {
	if a.setID == nil {
		return
	}
	id := *a.setID
	if id != "" && id != presented {
		u.l.mu.Lock()
		prev, seen := u.l.issued[id]
		if !seen {
			u.l.issued[id] = u.idx
		}
		u.l.mu.Unlock()
		if seen {
			u.l.violate(Violation{Kind: ViolationIDReissued, User: u.name, At: a.at, Node: a.node,
				Detail: fmt.Sprintf("session id %s… issued again (first to u%d)", id[:min(8, len(id))], prev)})
		}
	}
	u.cookie = id
}

func (u *vuser) record(k bench.Kind, a answer, counter int, other bool) {
	u.recs = append(u.recs, bench.Record{
		User: int32(u.idx), Kind: k, Status: a.status, Node: a.node,
		At: a.at, Latency: a.took, Counter: counter, OtherUser: other,
	})
}

type apiAnswer struct {
	Node    string `json:"node"`
	User    string `json:"user"`
	Counter *int   `json:"counter"`
}

// login logs in presenting whatever id the user still holds (a lost
// session's, or none): the id after the login must be a fresh one.
func (u *vuser) login() {
	body, _ := json.Marshal(map[string]string{"username": u.name, "password": u.l.opts.Password})
	presented := u.cookie
	a := u.send(http.MethodPost, "/login", presented, body)
	u.record(bench.KindLogin, a, -1, false)
	if a.status != http.StatusOK {
		u.takeCookie(a, presented)
		return
	}
	var got apiAnswer
	_ = json.Unmarshal(a.body, &got)
	if got.User != u.name {
		u.l.violate(Violation{Kind: ViolationWrongUser, User: u.name, At: a.at, Node: a.node,
			Detail: fmt.Sprintf("login answered for %q", got.User)})
	}
	switch {
	case a.setID == nil || *a.setID == "":
		// A 200 without a session cookie: nothing to hold on to.
		u.l.violate(Violation{Kind: ViolationFixation, User: u.name, At: a.at, Node: a.node, Detail: "login set no session id"})
		return
	case presented != "" && *a.setID == presented:
		u.l.violate(Violation{Kind: ViolationFixation, User: u.name, At: a.at, Node: a.node,
			Detail: "login kept the session id the client came with"})
	}
	u.takeCookie(a, presented)
	u.writesSinceLogin = 0
	u.setLoggedIn(true)
}

// access reads (GET /api/me) or increments (POST /api/counter) the
// session's counter and checks the answer.
func (u *vuser) access(k bench.Kind) {
	method, path := http.MethodGet, "/api/me"
	if k == bench.KindWrite {
		method, path = http.MethodPost, "/api/counter"
		// Counted before sending: a write whose answer is lost may still
		// have been applied, and bounds the counter all the same.
		u.writesSinceLogin++
	}
	presented := u.cookie
	a := u.send(method, path, presented, nil)
	u.takeCookie(a, presented)
	counter, other := -1, false
	if a.status == http.StatusOK {
		var got apiAnswer
		if json.Unmarshal(a.body, &got) == nil && got.Counter != nil {
			counter = *got.Counter
		}
		if k == bench.KindRead && got.User != u.name {
			other = true
			u.l.violate(Violation{Kind: ViolationWrongUser, User: u.name, At: a.at, Node: a.node,
				Detail: fmt.Sprintf("GET /api/me answered for %q", got.User)})
		}
		if counter > u.writesSinceLogin {
			u.l.violate(Violation{Kind: ViolationPhantom, User: u.name, At: a.at, Node: a.node,
				Detail: fmt.Sprintf("counter %d after %d increments sent since the login", counter, u.writesSinceLogin)})
		}
	}
	if u.stopped() && a.status == 0 {
		u.l.aborted.Add(1)
	}
	u.record(k, a, counter, other)
	if a.status == http.StatusUnauthorized || other {
		u.setLoggedIn(false)
	}
}

// logout logs out. Whatever the answer, the user then counts itself
// logged out and logs in again (a failed logout may or may not have
// destroyed the session); only an acknowledged logout's id joins the ids
// that must never work again.
func (u *vuser) logout() {
	presented := u.cookie
	u.l.logouts.Add(1)
	a := u.send(http.MethodPost, "/logout", presented, nil)
	u.setLoggedIn(false)
	if a.status == http.StatusOK && presented != "" {
		u.l.logoutsAcked.Add(1)
		u.dead = append(u.dead, presented)
		if len(u.dead) > deadPerUser {
			u.dead = u.dead[1:]
		}
		u.l.mu.Lock()
		u.l.dead = append(u.l.dead, DeadCookie{User: u.name, ID: presented, At: a.at})
		u.l.mu.Unlock()
	}
	u.takeCookie(a, presented)
	if a.status != http.StatusOK {
		u.cookie = "" // unknown state: start from nothing
	}
}

// probe replays one of the user's logged-out ids through the balancer:
// it must be refused.
func (u *vuser) probe() {
	id := u.dead[u.rng.IntN(len(u.dead))]
	u.l.probes.Add(1)
	a := u.send(http.MethodGet, "/api/me", id, nil)
	switch a.status {
	case http.StatusUnauthorized:
		u.l.conclusive.Add(1)
	case http.StatusOK:
		u.l.conclusive.Add(1)
		var got apiAnswer
		_ = json.Unmarshal(a.body, &got)
		u.l.violate(Violation{Kind: ViolationResurrected, User: u.name, At: a.at, Node: a.node,
			Detail: fmt.Sprintf("logged-out session %s… (%s in the logs) answered for %q", id[:8], session.Fingerprint(id), got.User)})
	}
}
