package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"sync/atomic"
	"time"
	"unique"
)

// MaxUsers bounds Options.Users: each virtual user has a client address
// of its own in 127.1.0.0/16 (see UserAddr) and keeps one connection open.
const MaxUsers = 10000

// maxBody bounds what a user reads of one answer: the demo's JSON
// answers are a few dozen bytes; anything longer is drained and dropped.
const maxBody = 64 << 10

// UserAddr returns virtual user i's client address: 127.1.H.L with L in
// 1…250, so every user has its own source address and a balancer hashing
// the client address (ip_hash) sees them as different clients. The
// balancer and the nodes use 127.0.0.1; Linux routes all of 127.0.0.0/8
// to the loopback interface, so binding these needs no setup.
func UserAddr(i int) net.IP {
	return net.IPv4(127, 1, byte(i/250), byte(1+i%250))
}

// userName is the login name of virtual user i.
func userName(i int) string { return fmt.Sprintf("u%05d", i) }

// newUserClient returns an HTTP client for one virtual user: its own
// cookie jar, its own connection pool, connections from its own address.
// Redirects are not followed: the JSON API answers without them.
func newUserClient(ip net.IP, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 2 * time.Second, KeepAlive: -1}
	tr := &http.Transport{
		Proxy:               nil, // loopback only: never an HTTP_PROXY from the environment
		DialContext:         d.DialContext,
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	jar, _ := cookiejar.New(nil) // cannot fail without a public suffix list
	return &http.Client{
		Transport:     tr,
		Jar:           jar,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// live holds the counters the progress display reads while users run.
type live struct {
	requests, ok, unauthorized, failed atomic.Int64
}

// user is one virtual user: it logs in, then reads and writes one request
// at a time (never two at once: the demo's counter is a read-modify-write
// and two concurrent increments of one session may lose one by design),
// and logs in again whenever it finds itself logged out.
type user struct {
	idx      int
	name     string
	base     string // balancer URL
	password string
	client   *http.Client
	rng      *rand.Rand
	live     *live

	think      time.Duration
	writeRatio float64
	maxReqs    int

	start    time.Time
	recs     []Record
	loggedIn bool
}

// run drives the user until end or ctx, then sends one last read so that
// every increment acknowledged late in the run is checked too. The final
// read is bounded by the client timeout.
func (u *user) run(ctx context.Context, end time.Time) {
	defer u.client.CloseIdleConnections()
	// Spread the first logins over the first think time (at most a
	// second) rather than sending U logins at once.
	if !u.pause(ctx, end, time.Duration(u.rng.Int64N(int64(min(u.think, time.Second))+1))) {
		return
	}
	for len(u.recs) < u.maxReqs {
		if !u.loggedIn {
			u.login(ctx)
		} else if u.rng.Float64() < u.writeRatio {
			u.session(ctx, KindWrite)
		} else {
			u.session(ctx, KindRead)
		}
		if !u.pause(ctx, end, u.jitter()) {
			break
		}
	}
	if u.loggedIn && ctx.Err() == nil {
		u.session(ctx, KindRead)
	}
}

// jitter returns a think time uniform in [think/2, 3·think/2): users that
// started together drift apart instead of marching in step.
func (u *user) jitter() time.Duration {
	if u.think <= 0 {
		return 0
	}
	return u.think/2 + time.Duration(u.rng.Int64N(int64(u.think)))
}

// pause waits d and reports whether the user should go on: false once
// ctx ends or the wait would pass end.
func (u *user) pause(ctx context.Context, end time.Time, d time.Duration) bool {
	if ctx.Err() != nil || !time.Now().Add(d).Before(end) {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type apiAnswer struct {
	Node    string `json:"node"`
	User    string `json:"user"`
	Counter *int   `json:"counter"`
}

func (u *user) login(ctx context.Context) {
	body, _ := json.Marshal(loginRequest{Username: u.name, Password: u.password})
	rec := u.do(ctx, KindLogin, http.MethodPost, "/login", body)
	u.loggedIn = rec.Status == http.StatusOK
}

// session sends one read or write and records it. A 401, or a session
// of another user, sends the user back to the login.
func (u *user) session(ctx context.Context, k Kind) {
	method, path := http.MethodGet, "/api/me"
	if k == KindWrite {
		method, path = http.MethodPost, "/api/counter"
	}
	rec := u.do(ctx, k, method, path, nil)
	if rec.Status == http.StatusUnauthorized || (rec.Status == http.StatusOK && rec.OtherUser) {
		u.loggedIn = false
	}
}

// do sends one request, records it and returns the record.
func (u *user) do(ctx context.Context, k Kind, method, path string, body []byte) Record {
	rec := Record{User: int32(u.idx), Kind: k, Counter: -1}
	var a apiAnswer
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.base+path, rd)
	if err != nil {
		// Only a malformed base URL gets here; Run checks it first.
		panic(fmt.Sprintf("bench: request %s %s: %v", method, path, err))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	sent := time.Now()
	rec.At = sent.Sub(u.start)
	resp, err := u.client.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		rec.Status = resp.StatusCode
		rec.Node = internNode(resp.Header.Get("X-Roam-Node"))
		if err != nil {
			rec.Status = 0 // a torn answer is no answer
		} else if rec.Status == http.StatusOK && k != KindLogin {
			if json.Unmarshal(b, &a) == nil && a.Counter != nil {
				rec.Counter = *a.Counter
				rec.OtherUser = k == KindRead && a.User != u.name
			}
		}
	}
	rec.Latency = time.Since(sent)
	u.recs = append(u.recs, rec)
	u.live.requests.Add(1)
	switch {
	case rec.Status == http.StatusOK:
		u.live.ok.Add(1)
	case rec.Status == http.StatusUnauthorized:
		u.live.unauthorized.Add(1)
	default:
		u.live.failed.Add(1)
	}
	return rec
}

// internNode returns a canonical copy of a node id, so that thousands of
// records share a handful of strings instead of one allocation each.
func internNode(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
