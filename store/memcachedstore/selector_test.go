package memcachedstore_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// serverNames returns n distinct loopback addresses; nothing listens on
// them, and none is needed to pick servers.
func serverNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d:11211", i+1)
	}
	return out
}

// sessionKeys returns n keys shaped like the store's.
func sessionKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = memcachedstore.DefaultPrefix + session.NewID()
	}
	return keys
}

// placements returns the server each key is placed on.
func placements(t *testing.T, sel memcache.ServerSelector, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		a, err := sel.PickServer(k)
		if err != nil {
			t.Fatalf("PickServer: %v", err)
		}
		out[i] = a.String()
	}
	return out
}

// remap measures what removing servers[victim] from a list of n does to
// keys: the share of keys that changed server, and how many of them had
// not been on the removed server.
func remap(t *testing.T, sel interface {
	memcache.ServerSelector
	SetServers(...string) error
}, n, victim int, keys []string) (moved float64, bystanders int) {
	t.Helper()
	all := serverNames(n)
	if err := sel.SetServers(all...); err != nil {
		t.Fatal(err)
	}
	before := placements(t, sel, keys)
	if err := sel.SetServers(slices.Delete(slices.Clone(all), victim, victim+1)...); err != nil {
		t.Fatal(err)
	}
	after := placements(t, sel, keys)
	count := 0
	for i := range keys {
		if before[i] != after[i] {
			count++
			if before[i] != all[victim] {
				bystanders++
			}
		}
	}
	// And back: a recovering server takes back exactly what it had.
	if err := sel.SetServers(all...); err != nil {
		t.Fatal(err)
	}
	if back := placements(t, sel, keys); !slices.Equal(back, before) {
		t.Errorf("%T: after the server came back, keys are not where they were before it left", sel)
	}
	return float64(count) / float64(len(keys)), bystanders
}

// TestRemovingAServerMovesOnlyItsKeys pins down why the store brings its
// own selector: with rendezvous hashing, taking one of N servers out moves
// only that server's keys (about 1/N); gomemcache's modulo ServerList moves
// most of them.
func TestRemovingAServerMovesOnlyItsKeys(t *testing.T) {
	keys := sessionKeys(15000)
	for _, n := range []int{3, 10} {
		for _, victim := range []int{0, n - 1} {
			ours, bystanders := remap(t, &memcachedstore.Selector{}, n, victim, keys)
			modulo, _ := remap(t, &memcache.ServerList{}, n, victim, keys)
			t.Logf("%d servers, remove #%d: rendezvous moves %.1f%% of %d keys, modulo moves %.1f%%", n, victim, 100*ours, len(keys), 100*modulo)
			if bystanders != 0 {
				t.Errorf("%d servers, remove #%d: %d keys moved that were not on the removed server, want 0", n, victim, bystanders)
			}
			// Binomial: 15000 keys at p = 1/3 are within ±1.5% (4 sd) of 1/3.
			if share := 1 / float64(n); ours < share-0.015 || ours > share+0.015 {
				t.Errorf("%d servers, remove one: rendezvous moved %.1f%% of keys, want about %.1f%% (an even share)", n, 100*ours, 100*share)
			}
			if want := 1 - 2/float64(n); modulo < want {
				t.Errorf("%d servers: modulo moved only %.1f%%; the comparison is measuring something else", n, 100*modulo)
			}
		}
	}
}

func TestSelectorSpreadsKeysEvenly(t *testing.T) {
	keys := sessionKeys(15000)
	sel, err := memcachedstore.NewSelector(serverNames(3)...)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, s := range placements(t, sel, keys) {
		counts[s]++
	}
	for s, c := range counts {
		if share := float64(c) / float64(len(keys)); share < 0.318 || share > 0.348 {
			t.Errorf("server %s holds %.1f%% of keys, want about 33.3%%", s, 100*share)
		}
	}
}

func TestSelectorIsIndependentOfListOrder(t *testing.T) {
	keys := sessionKeys(1000)
	names := serverNames(4)
	a, _ := memcachedstore.NewSelector(names...)
	reversed := slices.Clone(names)
	slices.Reverse(reversed)
	b, _ := memcachedstore.NewSelector(reversed...)
	if !slices.Equal(placements(t, a, keys), placements(t, b, keys)) {
		t.Error("two application servers listing the same memcached servers in another order place keys differently")
	}
}

func TestSelectorRejectsBadLists(t *testing.T) {
	sel, err := memcachedstore.NewSelector("127.0.0.1:11211", "127.0.0.2:11211")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{
		{"127.0.0.1:11211", "127.0.0.1:11211"},
		{"127.0.0.1:11211", ""},
		{"no-port"},
	} {
		if err := sel.SetServers(bad...); err == nil {
			t.Errorf("SetServers(%q) = nil, want an error", bad)
		}
	}
	if got := sel.Servers(); !slices.Equal(got, []string{"127.0.0.1:11211", "127.0.0.2:11211"}) {
		t.Errorf("after refused SetServers calls: Servers() = %v, want the list unchanged", got)
	}
	var each []string
	_ = sel.Each(func(a net.Addr) error { each = append(each, a.String()); return nil })
	if len(each) != 2 {
		t.Errorf("Each visited %v, want both servers", each)
	}
	var zero memcachedstore.Selector
	if _, err := zero.PickServer("k"); !errors.Is(err, memcache.ErrNoServers) {
		t.Errorf("zero Selector: PickServer = %v, want ErrNoServers", err)
	}
	if _, _, err := memcachedstore.NewClient(nil, memcachedstore.ClientOptions{}); err == nil {
		t.Error("NewClient with no servers = nil error")
	}
}

func TestSelectorPickServerDoesNotAllocate(t *testing.T) {
	sel, _ := memcachedstore.NewSelector(serverNames(3)...)
	key := memcachedstore.DefaultPrefix + session.NewID()
	if n := testing.AllocsPerRun(100, func() { _, _ = sel.PickServer(key) }); n != 0 {
		t.Errorf("PickServer allocates %v times per call, want 0", n)
	}
}

// TestRemovingAServerKeepsTheOthersSessions is the same measurement on real
// servers, end to end: three memcached, one dies and is taken out of the
// list; every session that was not on it still loads. With gomemcache's
// ServerList over the same servers, most sessions are lost.
func TestRemovingAServerKeepsTheOthersSessions(t *testing.T) {
	const sessions = 300
	f := newFixture(t, 3, memcachedstore.Options{})
	ids := make([]string, sessions)
	onVictim := 0
	for i := range ids {
		ids[i] = create(t, f.store, "i", fmt.Sprint(i))
		if f.serverOf(t, f.prefix+ids[i]) == 2 {
			onVictim++
		}
	}

	// The same sessions written through a modulo client, under other keys.
	list := &memcache.ServerList{}
	if err := list.SetServers(f.addrs...); err != nil {
		t.Fatal(err)
	}
	modClient := memcache.NewFromSelector(list)
	modClient.Timeout = memcachedstore.DefaultTimeout
	t.Cleanup(func() { _ = modClient.Close() })
	mod, err := memcachedstore.New(modClient, memcachedstore.Options{Prefix: "modulo:"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		now := time.Now()
		if err := mod.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"i": nil}, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}

	f.servers[2].Kill()
	if err := f.sel.SetServers(f.addrs[:2]...); err != nil {
		t.Fatal(err)
	}
	if err := list.SetServers(f.addrs[:2]...); err != nil {
		t.Fatal(err)
	}
	kept, modKept := 0, 0
	for _, id := range ids {
		if _, err := f.store.Load(t.Context(), id); err == nil {
			kept++
		} else if !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Load on the two live servers = %v", err)
		}
		if _, err := mod.Load(t.Context(), id); err == nil {
			modKept++
		}
	}
	t.Logf("after losing 1 of 3 servers (%d of %d sessions on it): rendezvous keeps %d (%.0f%%), modulo keeps %d (%.0f%%)",
		onVictim, sessions, kept, 100*float64(kept)/sessions, modKept, 100*float64(modKept)/sessions)
	if kept != sessions-onVictim {
		t.Errorf("rendezvous: %d sessions still load, want every one not on the lost server: %d", kept, sessions-onVictim)
	}
	if modKept >= kept {
		t.Errorf("modulo kept %d sessions, rendezvous %d: the comparison shows nothing", modKept, kept)
	}
}
