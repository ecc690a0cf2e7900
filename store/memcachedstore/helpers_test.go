package memcachedstore_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// prefixes makes every store of a test binary use keys of its own, so
// stores sharing servers never see each other's sessions.
var prefixes atomic.Int64

// fixture is a store on real memcached servers and the parts it was built from.
type fixture struct {
	servers []*testserver.MemcachedServer
	addrs   []string
	client  *memcache.Client
	sel     *memcachedstore.Selector
	store   *memcachedstore.Store
	prefix  string // the store's key prefix
}

// newFixture starts n memcached servers and a store over all of them.
func newFixture(t *testing.T, n int, opts memcachedstore.Options) *fixture {
	t.Helper()
	servers := testserver.MemcachedN(t, n)
	addrs := make([]string, n)
	for i, s := range servers {
		addrs[i] = s.Addr
	}
	// A generous timeout: these tests share a loaded machine, and the ones
	// about timeouts set their own.
	f := onServers(t, addrs, memcachedstore.ClientOptions{Timeout: time.Second}, opts)
	f.servers = servers
	return f
}

// onServers builds a client and a store over already running servers.
func onServers(t *testing.T, addrs []string, co memcachedstore.ClientOptions, opts memcachedstore.Options) *fixture {
	t.Helper()
	client, sel, err := memcachedstore.NewClient(addrs, co)
	if err != nil {
		t.Fatalf("NewClient(%v) = %v", addrs, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if opts.Prefix == "" {
		opts.Prefix = fmt.Sprintf("t%d:", prefixes.Add(1))
	}
	st, err := memcachedstore.New(client, opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return &fixture{addrs: addrs, client: client, sel: sel, store: st, prefix: opts.Prefix}
}

// create makes a session holding one attribute, with an hour to live.
func create(t *testing.T, s session.Store, key, value string) string {
	t.Helper()
	id := session.NewID()
	now := time.Now()
	d := session.Delta{Create: true, Set: map[string][]byte{key: []byte(value)}, Created: now, Touched: now, Expires: now.Add(time.Hour)}
	if err := s.Apply(t.Context(), id, d); err != nil {
		t.Fatalf("Apply(Create) = %v", err)
	}
	return id
}

// serverOf returns the index of the server the fixture's selector places key on.
func (f *fixture) serverOf(t *testing.T, key string) int {
	t.Helper()
	a, err := f.sel.PickServer(key)
	if err != nil {
		t.Fatalf("PickServer: %v", err)
	}
	for i, s := range f.addrs {
		if s == a.String() {
			return i
		}
	}
	t.Fatalf("PickServer(%q) = %v, not one of %v", key, a, f.addrs)
	return -1
}

// mcStats reads a memcached server's general statistics with the text
// protocol's stats command (gomemcache has none).
func mcStats(t *testing.T, addr string) map[string]int64 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		t.Fatalf("stats: %v", err)
	}
	out := map[string]int64{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		line = strings.TrimSpace(line)
		if line == "END" {
			return out
		}
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "STAT" {
			if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				out[f[1]] = n
			}
		}
	}
}

// commands sums the counters of the commands the store sends, over servers.
type commands struct{ get, set, touch, del int64 }

func sumCommands(t *testing.T, addrs []string) commands {
	t.Helper()
	var c commands
	for _, a := range addrs {
		s := mcStats(t, a)
		c.get += s["cmd_get"]
		c.set += s["cmd_set"] // set, add, cas and friends
		c.touch += s["cmd_touch"]
		c.del += s["delete_hits"] + s["delete_misses"]
	}
	return c
}

func (c commands) minus(o commands) commands {
	return commands{c.get - o.get, c.set - o.set, c.touch - o.touch, c.del - o.del}
}
