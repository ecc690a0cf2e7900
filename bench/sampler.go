package bench

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// nodeSample is what one scrape of one node process read.
type nodeSample struct {
	peerBytes  float64 // replication bytes sent, since the process started
	storeCalls float64 // session store calls, since the process started
	sessions   float64 // sessions held (cluster stores), -1 when not reported
	rss        int64   // resident set size, 0 when unknown
}

// incarnation is one process of one node: a restart is a new one, with
// counters from zero.
type incarnation struct {
	id, url     string
	pid         int
	first, last nodeSample
	seen        bool
	// before: the process was already running when the load began, so its
	// counters up to the first sample are not the load's.
	before bool
}

// sampler scrapes every live node's /metrics and /proc RSS, so that a
// node killed mid-run still contributes what it did before it died.
type sampler struct {
	cl     Cluster
	client *http.Client

	mu    sync.Mutex
	inc   map[string]*incarnation // by id/pid
	order []string
}

func newSampler(cl Cluster) *sampler {
	return &sampler{
		cl:     cl,
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}},
		inc:    map[string]*incarnation{},
	}
}

// sample scrapes every live node once. baseline marks the processes seen
// now as running before the load. A node that does not answer (it was
// just killed) is skipped.
func (s *sampler) sample(ctx context.Context, baseline bool) {
	for _, n := range s.cl.Nodes() {
		if !n.Alive || n.URL == "" {
			continue
		}
		ns, ok := s.scrapeNode(ctx, n)
		if !ok {
			continue
		}
		key := n.ID + "/" + strconv.Itoa(n.PID)
		s.mu.Lock()
		in := s.inc[key]
		if in == nil {
			in = &incarnation{id: n.ID, url: n.URL, pid: n.PID, before: baseline}
			s.inc[key] = in
			s.order = append(s.order, key)
		}
		if !in.seen {
			in.first, in.seen = ns, true
		}
		in.last = ns
		s.mu.Unlock()
	}
}

func (s *sampler) scrapeNode(ctx context.Context, n Node) (nodeSample, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := scrape(ctx, s.client, n.URL+"/metrics")
	if err != nil {
		return nodeSample{}, false
	}
	ns := nodeSample{peerBytes: m.Sum(metricPeerBytesSent), sessions: -1}
	for _, name := range storeCallMetrics {
		ns.storeCalls += m.Sum(name)
	}
	if hasMetric(m, metricSessions) {
		ns.sessions = 0
		for _, role := range []string{"primary", "backup", "other"} {
			ns.sessions += m.SumWith(metricSessions, "role", role)
		}
	}
	if n.PID > 0 {
		if rss, err := readRSS(n.PID); err == nil {
			ns.rss = rss
		}
	}
	if ns.rss == 0 {
		ns.rss = int64(m.Sum(metricRSS))
	}
	return ns, true
}

func hasMetric(m Samples, name string) bool {
	for _, x := range m {
		if x.Name == name {
			return true
		}
	}
	return false
}

// loop samples every interval until ctx ends.
func (s *sampler) loop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx, false)
		}
	}
}

// nodeUsage is what the sampler found for one node id.
type nodeUsage struct {
	RSS      int64   // of its last process, at its last sample
	Sessions float64 // held at its last sample; -1 when not reported
}

// totals returns the replication bytes and store calls made during the
// load, summed over every process of every node, and each node's last
// RSS and session count.
func (s *sampler) totals() (replication, storeCalls int64, perNode map[string]nodeUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	perNode = map[string]nodeUsage{}
	var rep, calls float64
	for _, key := range s.order {
		in := s.inc[key]
		var base nodeSample
		if in.before {
			base = in.first
		}
		rep += max(in.last.peerBytes-base.peerBytes, 0)
		calls += max(in.last.storeCalls-base.storeCalls, 0)
		// Later incarnations come later in order: the last one wins.
		perNode[in.id] = nodeUsage{RSS: in.last.rss, Sessions: in.last.sessions}
	}
	return int64(rep), int64(calls), perNode
}
