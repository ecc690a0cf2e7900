package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/session"
)

// testLogger logs to stderr when ROAM_TEST_LOG is set (its value is the
// level: debug, info, warn), else nowhere.
func testLogger() *slog.Logger {
	lv := os.Getenv("ROAM_TEST_LOG")
	if lv == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(lv))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// cluster is a set of in-process nodes on 127.0.0.x loopback addresses.
type tcluster struct {
	t     testing.TB
	mode  Mode
	mut   func(*Config)
	mu    sync.Mutex
	nodes map[string]*Store
	addrs map[string]string // id → gossip addr (kept across restarts)
	seq   int
}

func newTCluster(t testing.TB, mode Mode, n int, mut func(*Config)) *tcluster {
	t.Helper()
	c := &tcluster{t: t, mode: mode, mut: mut, nodes: map[string]*Store{}, addrs: map[string]string{}}
	t.Cleanup(c.closeAll)
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	c.waitReady(c.ids()...)
	return c
}

// host returns the loopback address of node id nK: 127.0.0.K.
func hostOf(id string) string {
	k, err := strconv.Atoi(strings.TrimPrefix(id, "n"))
	if err != nil || k < 1 || k > 250 {
		k = 1
	}
	return "127.0.0." + strconv.Itoa(k)
}

func (c *tcluster) config(id, bind string) Config {
	var seeds []string
	c.mu.Lock()
	for other, a := range c.addrs {
		if other != id {
			seeds = append(seeds, a)
		}
	}
	c.mu.Unlock()
	slices.Sort(seeds)
	host, _, _ := net.SplitHostPort(bind)
	cfg := Config{
		NodeID:         id,
		Bind:           bind,
		PeerBind:       net.JoinHostPort(host, "0"),
		Seeds:          seeds,
		Mode:           c.mode,
		SyncInterval:   200 * time.Millisecond,
		RejoinInterval: 500 * time.Millisecond,
		Logger:         testLogger(),
	}
	if c.mut != nil {
		c.mut(&cfg)
	}
	return cfg
}

// start starts node id (again, at its old gossip address when it had one)
// and returns it without waiting for it to be ready.
func (c *tcluster) start(id string) *Store {
	c.t.Helper()
	return c.startAt(id, "")
}

// startAt starts id at bind ("" keeps its old address or picks one).
func (c *tcluster) startAt(id, bind string) *Store {
	c.t.Helper()
	var lastErr error
	for range 5 {
		b := bind
		if b == "" {
			c.mu.Lock()
			b = c.addrs[id]
			c.mu.Unlock()
		}
		if b == "" {
			host := hostOf(id)
			port, err := proc.FreePort(host)
			if err != nil {
				c.t.Fatal(err)
			}
			b = net.JoinHostPort(host, strconv.Itoa(port))
		}
		s, err := New(context.Background(), c.config(id, b))
		if err != nil {
			lastErr = err
			if bind == "" && c.addrs[id] == "" {
				continue // port race: pick another
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.nodes[id] = s
		c.addrs[id] = b
		c.mu.Unlock()
		return s
	}
	c.t.Fatalf("start %s: %v", id, lastErr)
	return nil
}

// anyNode returns a running node chosen at random, picked under the lock
// so that a node stopping meanwhile (a rolling restart) is never chosen
// after it is gone. Callers must cope with a node that stops right after.
func (c *tcluster) anyNode() *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	nodes := make([]*Store, 0, len(c.nodes))
	for _, s := range c.nodes {
		nodes = append(nodes, s)
	}
	if len(nodes) == 0 {
		c.t.Fatalf("no running node")
	}
	return nodes[rand.IntN(len(nodes))]
}

func (c *tcluster) node(id string) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.nodes[id]
	if s == nil {
		c.t.Fatalf("no running node %s", id)
	}
	return s
}

func (c *tcluster) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// crash stops id abruptly (no leave, no hand-off).
func (c *tcluster) crash(id string) {
	s := c.node(id)
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
	s.crash()
}

// leave closes id gracefully.
func (c *tcluster) leave(id string) {
	c.t.Helper()
	s := c.node(id)
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		c.t.Errorf("Close(%s) = %v, want nil", id, err)
	}
}

func (c *tcluster) closeAll() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*Store{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Go(func() { s.crash() })
	}
	wg.Wait()
}

// waitReady waits until every listed node is ready and sees exactly the
// running nodes as ready members.
func (c *tcluster) waitReady(ids ...string) {
	c.t.Helper()
	want := c.ids()
	waitFor(c.t, 20*time.Second, fmt.Sprintf("nodes %v ready, each seeing %v", ids, want), func() bool {
		for _, id := range ids {
			s := c.node(id)
			if s.Ready() != nil || !slices.Equal(s.mem.view().ready, want) {
				return false
			}
		}
		for _, id := range want {
			if !slices.Equal(c.node(id).mem.view().ready, want) {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newDelta(vals ...string) session.Delta {
	now := time.Now()
	d := session.Delta{Create: true, Set: map[string][]byte{}, Created: now, Touched: now, Expires: now.Add(time.Hour)}
	for i := 0; i+1 < len(vals); i += 2 {
		d.Set[vals[i]] = []byte(vals[i+1])
	}
	return d
}

func setDelta(vals ...string) session.Delta {
	d := session.Delta{Set: map[string][]byte{}}
	for i := 0; i+1 < len(vals); i += 2 {
		d.Set[vals[i]] = []byte(vals[i+1])
	}
	return d
}

// mustLoad loads id from s and returns the value of key.
func mustLoad(t *testing.T, s *Store, id, key string) string {
	t.Helper()
	rec, err := s.Load(ctxT(t), id)
	if err != nil {
		t.Fatalf("%s: Load(%s) = %v, want the session", s.self, fingerprint(id), err)
	}
	return string(rec.Values[key])
}

func wantNotFound(t *testing.T, s *Store, id string) {
	t.Helper()
	if _, err := s.Load(ctxT(t), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("%s: Load(%s) = %v, want ErrNotFound", s.self, fingerprint(id), err)
	}
}

// holdersOf returns which running nodes hold a live copy of id locally.
func (c *tcluster) holdersOf(id string) []string {
	var out []string
	now := time.Now().UnixNano()
	for _, nid := range c.ids() {
		if rec, _, _ := c.node(nid).tab.load(id, now); rec != nil {
			out = append(out, nid)
		}
	}
	return out
}

// rotating is a session.Store that sends each call to the next node in
// turn, so every behaviour is exercised through forwarding as well.
type rotating struct {
	c *tcluster
	n atomic.Uint64
}

func (r *rotating) pick() *Store {
	ids := r.c.ids()
	return r.c.node(ids[int(r.n.Add(1))%len(ids)])
}
func (r *rotating) Load(ctx context.Context, id string) (*session.Record, error) {
	return r.pick().Load(ctx, id)
}
func (r *rotating) Apply(ctx context.Context, id string, d session.Delta) error {
	return r.pick().Apply(ctx, id, d)
}
func (r *rotating) Delete(ctx context.Context, id string) error { return r.pick().Delete(ctx, id) }
func (r *rotating) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	return r.pick().Touch(ctx, id, touched, expires)
}
func (r *rotating) FindByPrincipal(ctx context.Context, p string) ([]string, error) {
	return r.pick().FindByPrincipal(ctx, p)
}
func (r *rotating) DeleteByPrincipal(ctx context.Context, p string) (int, error) {
	return r.pick().DeleteByPrincipal(ctx, p)
}
func (r *rotating) Count(ctx context.Context) (int, error) { return r.pick().Count(ctx) }
func (r *rotating) Range(ctx context.Context, fn func(*session.Record) bool) error {
	return r.pick().Range(ctx, fn)
}

// testutilCount reads a counter's value.
func testutilCount(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}
