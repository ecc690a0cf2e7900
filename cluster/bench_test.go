package cluster

// Benchmarks for docs/benchmarks.md (Cluster store). Run them on a quiet machine:
//
//	go test -run '^$' -bench . -benchtime 2000x ./cluster/
//
// Latency benchmarks report p50/p99 in µs besides ns/op; paired ones
// (a write beside a bare transport round trip) run in the same process so
// their ratio is meaningful.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// startBench starts n nodes for a benchmark; with secret, peer traffic is
// TLS-authenticated as in production.
func startBench(b *testing.B, mode Mode, n int, secret bool) *tcluster {
	b.Helper()
	return newTCluster(b, mode, n, func(cfg *Config) {
		if secret {
			cfg.Secret = []byte("benchmark secret")
		}
	})
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	if len(d) == 0 {
		return 0, 0
	}
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
}

func reportLatency(b *testing.B, d []time.Duration) {
	p50, p99 := percentiles(d)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
}

// BenchmarkWriteAck measures the acknowledgement latency of one write (a
// counter update at the session's primary) on a 3-node sync backup cluster
// and a 3-node sync all cluster, beside two bare round trips: an empty
// batch on a write stream (the transport the writes travel on: HTTP/2 + TLS,
// one long-lived stream) and a 64-byte Ping as a request of its own (what
// every other peer call costs). The four are interleaved in one loop, so a
// busy machine slows them alike and their ratios hold.
func BenchmarkWriteAck(b *testing.B) {
	backup := startBench(b, ModeBackup, 3, true)
	all := startBench(b, ModeAll, 3, true)
	bIDs := sessionsOwnedBy(b, backup, "n1", 256)
	aIDs := sessionsOwnedBy(b, all, "n1", 256)
	bn, an := backup.node("n1"), all.node("n1")
	peer := backup.node("n2").PeerAddr()
	ping := &wire.Ping{Payload: make([]byte, 64)}
	// The write stream the replicated writes travel on, carrying empty
	// batches: the transport's own round trip.
	ws := bn.pc.openWriteStream(peer)
	defer ws.close()
	empty := &wire.Writes{From: "n1"}
	var db, da, dp, ds []time.Duration
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := bn.Apply(ctx, bIDs[i%len(bIDs)], setDelta("counter", strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		db = append(db, time.Since(start))
		start = time.Now()
		if err := an.Apply(ctx, aIDs[i%len(aIDs)], setDelta("counter", strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		da = append(da, time.Since(start))
		start = time.Now()
		var pong wire.Ping
		if err := bn.pc.call(ctx, peer, pathPing, ping, &pong); err != nil {
			b.Fatal(err)
		}
		dp = append(dp, time.Since(start))
		start = time.Now()
		var res wire.Results
		if err := ws.roundTrip(empty, &res); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"backup", db}, {"all", da}, {"bare-stream", ds}, {"bare-request", dp}} {
		p50, p99 := percentiles(r.d)
		b.ReportMetric(float64(p50.Microseconds()), r.name+"-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), r.name+"-p99-µs")
	}
}

// BenchmarkLoadAtOwner reads sessions at their primary: no network I/O
// (the benchmark fails if any peer byte is sent).
func BenchmarkLoadAtOwner(b *testing.B) {
	c := startBench(b, ModeBackup, 3, true)
	s := c.node("n1")
	ids := sessionsOwnedBy(b, c, "n1", 256)
	before := testutilCount(s.metrics.bytesSent)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Load(context.Background(), ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sent := testutilCount(s.metrics.bytesSent) - before; sent != 0 {
		b.Fatalf("reads at the owner sent %v peer bytes, want 0", sent)
	}
}

// BenchmarkMemoryPerNode creates 100,000 sessions (user, counter, node) on
// 3 nodes and reports the Go heap per node.
func BenchmarkMemoryPerNode(b *testing.B) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		b.Run(string(mode), func(b *testing.B) {
			b.StopTimer()
			// Let the goroutines of a previous benchmark's nodes finish
			// exiting, so their memory is not counted as this baseline.
			time.Sleep(2 * time.Second)
			runtime.GC()
			var m0 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c := startBench(b, mode, 3, true)
			ids := c.ids()
			const total = 100_000
			work := make(chan int)
			done := make(chan struct{})
			for w := range 8 {
				go func() {
					for i := range work {
						id := session.NewID()
						_ = w
						if err := c.node(ids[i%3]).Apply(context.Background(), id, newDelta("user", "user"+strconv.Itoa(i), "counter", strconv.Itoa(i), "node", ids[i%3])); err != nil {
							b.Error(err)
						}
					}
					done <- struct{}{}
				}()
			}
			for i := range total {
				work <- i
			}
			close(work)
			for range 8 {
				<-done
			}
			runtime.GC()
			var m1 runtime.MemStats
			runtime.ReadMemStats(&m1)
			held := 0
			for _, id := range ids {
				held += c.node(id).tab.count()
			}
			b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/3/(1<<20), "MiB-heap/node")
			b.ReportMetric(float64(held)/3, "sessions/node")
			for range b.N {
			}
		})
	}
}

// BenchmarkReplicationBytes reports the peer bytes one write costs (sent
// by every node, requests and answers) for N = 2…6.
func BenchmarkReplicationBytes(b *testing.B) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		for n := 2; n <= 6; n++ {
			b.Run(fmt.Sprintf("%s-N%d", mode, n), func(b *testing.B) {
				c := startBench(b, mode, n, true)
				s := c.node("n1")
				ids := sessionsOwnedBy(b, c, "n1", 64)
				sum := func() float64 {
					t := 0.0
					for _, id := range c.ids() {
						t += testutilCount(c.node(id).metrics.bytesSent)
					}
					return t
				}
				before := sum()
				b.ResetTimer()
				for i := range b.N {
					if err := s.Apply(context.Background(), ids[i%len(ids)], setDelta("counter", strconv.Itoa(1000000+i))); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric((sum()-before)/float64(b.N), "peer-bytes/write")
			})
		}
	}
}

// BenchmarkCrashDetection measures, over b.N crashes, how long until every
// survivor's membership has dropped a crashed node (the default tuning).
func BenchmarkCrashDetection(b *testing.B) {
	for _, n := range []int{3, 5, 10} {
		b.Run(fmt.Sprintf("N%d", n), func(b *testing.B) {
			var ds []time.Duration
			for range b.N {
				c := startBench(b, ModeBackup, n, false)
				victim := c.ids()[len(c.ids())-1]
				start := time.Now()
				c.crash(victim)
				for {
					all := true
					for _, id := range c.ids() {
						if slices.Contains(c.node(id).mem.view().ready, victim) {
							all = false
						}
					}
					if all {
						break
					}
					if time.Since(start) > 30*time.Second {
						b.Fatal("crash not detected in 30 s")
					}
					time.Sleep(5 * time.Millisecond)
				}
				ds = append(ds, time.Since(start))
				c.closeAll()
			}
			p50, p99 := percentiles(ds)
			b.ReportMetric(p50.Seconds(), "p50-s")
			b.ReportMetric(p99.Seconds(), "p99-s")
			b.ReportMetric(ds[len(ds)-1].Seconds(), "max-s")
		})
	}
}

// sessionsOwnedBy creates n sessions whose primary is node.
func sessionsOwnedBy(b *testing.B, c *tcluster, node string, n int) []string {
	b.Helper()
	var ids []string
	for len(ids) < n {
		id := session.NewID()
		if placement.Primary(id, c.ids()) != node {
			continue
		}
		if err := c.node(node).Apply(context.Background(), id, newDelta("user", "alice", "counter", "0")); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// BenchmarkApplyParallel drives writes from many goroutines at one
// primary of a 3-node sync backup cluster: the CPU cost of replication
// under load (run with -cpuprofile to see where it goes).
func BenchmarkApplyParallel(b *testing.B) {
	c := startBench(b, ModeBackup, 3, true)
	s := c.node("n1")
	ids := sessionsOwnedBy(b, c, "n1", 1024)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.Apply(context.Background(), ids[i%int64(len(ids))], setDelta("counter", strconv.FormatInt(i, 10))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConcurrentWrites drives counter writes from 32 goroutines at
// every node of a 3-node sync cluster (coordinators and replicas share
// this process, so ns/op is the whole cluster's CPU-and-wait per write),
// for each mode. Profile it to see where a replicated write's CPU goes:
//
//	go test -run '^$' -bench ConcurrentWrites -benchtime 20000x -cpuprofile cpu.out ./cluster/
func BenchmarkConcurrentWrites(b *testing.B) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		b.Run(string(mode), func(b *testing.B) {
			c := startBench(b, mode, 3, true)
			nodes := c.ids()
			var ids []string
			for range 1024 {
				id := session.NewID()
				if err := c.node(nodes[0]).Apply(context.Background(), id, newDelta("counter", "0")); err != nil {
					b.Fatal(err)
				}
				ids = append(ids, id)
			}
			var next atomic.Int64
			b.SetParallelism(16) // 32 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					id := ids[i%int64(len(ids))]
					// In backup mode the owner policy sends a request to
					// the primary; in all mode round-robin spreads them.
					s := c.node(placement.Primary(id, nodes))
					if mode == ModeAll {
						s = c.node(nodes[i%int64(len(nodes))])
					}
					if err := s.Apply(context.Background(), id, setDelta("counter", strconv.FormatInt(i, 10))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
