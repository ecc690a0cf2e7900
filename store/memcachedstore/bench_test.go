package memcachedstore_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
)

// Each network benchmark runs the store beside the bare gomemcache calls
// that make the same round trips on the same item, through the same
// client, in the same run: compare store/X with bare/X. Run with
//
//	go test -run '^$' -bench . -count 6 ./store/memcachedstore/

// benchSessions are the shapes measured: a typical logged-in session (a
// handful of small attributes) and a heavy one.
func benchSessions() []struct {
	name   string
	values map[string][]byte
} {
	small := map[string][]byte{
		"user":    []byte(`"alice"`),
		"counter": []byte("7"),
		"csrf":    []byte(`"q5Jx2nB0d8m1sXcVbN3ZkQ"`),
		"theme":   []byte(`"dark"`),
		"cart":    []byte(`[{"sku":"A-1","n":2},{"sku":"B-7","n":1}]`),
	}
	heavy := map[string][]byte{}
	for i := range 32 {
		heavy[fmt.Sprintf("attr%02d", i)] = bytes.Repeat([]byte{'a' + byte(i%26)}, 256)
	}
	return []struct {
		name   string
		values map[string][]byte
	}{{"small", small}, {"heavy", heavy}}
}

func benchFixture(b *testing.B) *fixture {
	b.Helper()
	srv := testserver.Memcached(b).Addr
	// A long timeout: a benchmark measures overhead, and must not fail
	// when a shared machine stalls memcached for longer than the default.
	client, sel, err := memcachedstore.NewClient([]string{srv}, memcachedstore.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	st, err := memcachedstore.New(client, memcachedstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{addrs: []string{srv}, client: client, sel: sel, store: st, prefix: memcachedstore.DefaultPrefix}
}

func newBenchSession(b *testing.B, st *memcachedstore.Store, values map[string][]byte) string {
	b.Helper()
	id := session.NewID()
	now := time.Now()
	if err := st.Apply(b.Context(), id, session.Delta{Create: true, Set: values, SetPrincipal: true, Principal: "alice",
		Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	return id
}

// BenchmarkLoad: Store.Load against a bare gomemcache Get of the same item
// (the store's one round trip, without decoding or checks).
func BenchmarkLoad(b *testing.B) {
	f := benchFixture(b)
	for _, s := range benchSessions() {
		id := newBenchSession(b, f.store, s.values)
		key := f.prefix + id
		b.Run("bare/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.client.Get(key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("store/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := b.Context()
			for b.Loop() {
				if _, err := f.store.Load(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("paired/"+s.name, func(b *testing.B) {
			ctx := b.Context()
			paired(b, func() error {
				_, err := f.client.Get(key)
				return err
			}, func() error {
				_, err := f.store.Load(ctx, id)
				return err
			})
		})
	}
}

// paired runs bare and store alternately, one of each per iteration (in
// alternating order), and reports the median time of each and their ratio.
// Consecutive sub-benchmarks on a shared, noisy machine drift apart by
// more than the overhead being measured; calls side by side in one loop
// see the same noise, and medians ignore the stalls.
func paired(b *testing.B, bare, store func() error) {
	var tb, ts []time.Duration
	for i := 0; b.Loop(); i++ {
		first, second, tf, tsec := bare, store, &tb, &ts
		if i%2 == 1 {
			first, second, tf, tsec = store, bare, &ts, &tb
		}
		t0 := time.Now()
		if err := first(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := second(); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		*tf = append(*tf, t1.Sub(t0))
		*tsec = append(*tsec, t2.Sub(t1))
	}
	mb, ms := median(tb), median(ts)
	b.ReportMetric(float64(mb.Nanoseconds()), "bare-ns/op")
	b.ReportMetric(float64(ms.Nanoseconds()), "store-ns/op")
	b.ReportMetric(float64(ms)/float64(mb), "store/bare")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkApply: Store.Apply of a one-attribute delta against the bare
// Gets + CompareAndSwap that write the same item back (no decode, no
// merge, no encode).
func BenchmarkApply(b *testing.B) {
	f := benchFixture(b)
	for _, s := range benchSessions() {
		id := newBenchSession(b, f.store, s.values)
		key := f.prefix + id
		b.Run("bare/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				it, err := f.client.Get(key)
				if err != nil {
					b.Fatal(err)
				}
				it.Expiration = 3601
				if err := f.client.CompareAndSwap(it); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("store/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := b.Context()
			n := 0
			for b.Loop() {
				n++
				if err := f.store.Apply(ctx, id, counterDelta(n)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("paired/"+s.name, func(b *testing.B) {
			ctx := b.Context()
			n := 0
			paired(b, func() error {
				it, err := f.client.Get(key)
				if err != nil {
					return err
				}
				it.Expiration = 3601
				return f.client.CompareAndSwap(it)
			}, func() error {
				n++
				return f.store.Apply(ctx, id, counterDelta(n))
			})
		})
	}
}

// counterDelta is what a request that bumps a counter sends.
func counterDelta(n int) session.Delta {
	now := time.Now()
	return session.Delta{Set: map[string][]byte{"counter": fmt.Appendf(nil, "%d", n)}, Touched: now, Expires: now.Add(time.Hour)}
}

// BenchmarkPickServer: the rendezvous Selector against gomemcache's modulo
// ServerList over three servers. Both are far below a round trip.
func BenchmarkPickServer(b *testing.B) {
	servers := serverNames(3)
	key := memcachedstore.DefaultPrefix + session.NewID()
	ours, _ := memcachedstore.NewSelector(servers...)
	modulo := &memcache.ServerList{}
	_ = modulo.SetServers(servers...)
	for _, c := range []struct {
		name string
		sel  memcache.ServerSelector
	}{{"rendezvous", ours}, {"modulo", modulo}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = c.sel.PickServer(key)
			}
		})
	}
}
