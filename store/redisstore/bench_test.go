package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
)

// The benchmarks set each store call beside the bare go-redis round trip
// that does the same work, on the same server, in the same run. The
// "paired" sub-benchmarks alternate the two in one loop and report both
// means and their ratio (roam-ns/op ÷ raw-ns/op), which is what to quote on
// a shared, noisy machine; the others report allocations and the server's
// own time per call (server-µs/op, from INFO commandstats).
//
//	go test -run '^$' -bench . -benchtime 3000x -count 5 ./store/redisstore/

// benchSession creates a typical logged-in session: four attributes, a
// principal, an hour to live.
func benchSession(b *testing.B, s *redisstore.Store, principal string) string {
	b.Helper()
	id := session.NewID()
	now := time.Now()
	err := s.Apply(context.Background(), id, session.Delta{
		Create: true,
		Set: map[string][]byte{
			"user":    []byte(`"alice"`),
			"counter": []byte("7"),
			"csrf":    []byte(`"` + session.NewID() + `"`),
			"cart":    make([]byte, 200),
		},
		SetPrincipal: principal != "", Principal: principal,
		Created: now, Touched: now, Expires: now.Add(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	return id
}

func benchSetup(b *testing.B) (*redis.Client, *redisstore.Store, string) {
	r := testserver.Redis(b)
	client := standaloneClient(b, r.Addr)
	s := newStore(b, client, redisstore.Options{Prefix: "bench:"})
	return client, s, "bench:"
}

// serverMicros is the time the server has spent executing commands, from
// INFO commandstats (INFO itself left out): the work a call costs Redis,
// which network and scheduling noise on the client side do not blur.
func serverMicros(b *testing.B, c *redis.Client) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		_, rest, _ = strings.Cut(rest, "usec=")
		usec, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseFloat(usec, 64)
		if err != nil {
			b.Fatalf("commandstats line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// each runs f b.N times and reports, besides ns/op and allocations, the
// server's own time per call.
func each(b *testing.B, c *redis.Client, f func() error) {
	b.ReportAllocs()
	before := serverMicros(b, c)
	n := 0
	for b.Loop() {
		if err := f(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric((serverMicros(b, c)-before)/float64(n), "server-µs/op")
}

// paired runs raw and ours alternately, b.N times each, and reports the
// mean of each and their ratio.
func paired(b *testing.B, raw, ours func() error) {
	var rawT, oursT time.Duration
	i := 0
	for b.Loop() {
		fs := [2]func() error{raw, ours}
		ts := [2]*time.Duration{&rawT, &oursT}
		if i%2 == 1 { // alternate who goes first
			fs[0], fs[1], ts[0], ts[1] = fs[1], fs[0], ts[1], ts[0]
		}
		for j := range fs {
			t0 := time.Now()
			if err := fs[j](); err != nil {
				b.Fatal(err)
			}
			*ts[j] += time.Since(t0)
		}
		i++
	}
	b.ReportMetric(float64(rawT.Nanoseconds())/float64(i), "raw-ns/op")
	b.ReportMetric(float64(oursT.Nanoseconds())/float64(i), "roam-ns/op")
	b.ReportMetric(float64(oursT)/float64(rawT), "ratio")
}

// BenchmarkLoad: Store.Load (HGETALL, decode, deadline check) against a
// bare HGETALL of the same hash.
func BenchmarkLoad(b *testing.B) {
	client, s, prefix := benchSetup(b)
	id := benchSession(b, s, "alice")
	ctx := context.Background()
	raw := func() error { return client.HGetAll(ctx, prefix+"{"+id+"}").Err() }
	ours := func() error { _, err := s.Load(ctx, id); return err }
	b.Run("hgetall", func(b *testing.B) { each(b, client, raw) })
	b.Run("store", func(b *testing.B) { each(b, client, ours) })
	b.Run("paired", func(b *testing.B) { paired(b, raw, ours) })
}

// BenchmarkApply: Store.Apply of a typical request's delta (one attribute,
// new Touched and Expires) against a bare pipeline of HSET of the same
// fields and PEXPIREAT. The store's script also checks that the session
// exists and, for a logged-in session, moves its deadline in the principal
// index; "anonymous" has no index to maintain.
func BenchmarkApply(b *testing.B) {
	client, s, prefix := benchSetup(b)
	ctx := context.Background()
	for _, principal := range []string{"alice", ""} {
		name := "logged-in"
		if principal == "" {
			name = "anonymous"
		}
		id := benchSession(b, s, principal)
		key := prefix + "{" + id + "}"
		n := 0
		raw := func() error {
			n++
			now := time.Now()
			exp := now.Add(time.Hour)
			_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, key, "v:counter", []byte(strconv.Itoa(n)),
					"t", strconv.FormatInt(now.UnixMicro(), 10), "e", strconv.FormatInt(exp.UnixMicro(), 10))
				p.PExpireAt(ctx, key, exp)
				return nil
			})
			return err
		}
		ours := func() error {
			n++
			now := time.Now()
			return s.Apply(ctx, id, session.Delta{
				Set:     map[string][]byte{"counter": []byte(strconv.Itoa(n))},
				Touched: now, Expires: now.Add(time.Hour),
			})
		}
		b.Run(name+"/pipeline", func(b *testing.B) { each(b, client, raw) })
		b.Run(name+"/store", func(b *testing.B) { each(b, client, ours) })
		b.Run(name+"/paired", func(b *testing.B) { paired(b, raw, ours) })
	}
}

// BenchmarkTouch: Store.Touch against a bare pipeline of HSET t e and
// PEXPIREAT.
func BenchmarkTouch(b *testing.B) {
	client, s, prefix := benchSetup(b)
	ctx := context.Background()
	id := benchSession(b, s, "alice")
	key := prefix + "{" + id + "}"
	raw := func() error {
		now := time.Now()
		exp := now.Add(time.Hour)
		_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "t", strconv.FormatInt(now.UnixMicro(), 10), "e", strconv.FormatInt(exp.UnixMicro(), 10))
			p.PExpireAt(ctx, key, exp)
			return nil
		})
		return err
	}
	ours := func() error {
		now := time.Now()
		return s.Touch(ctx, id, now, now.Add(time.Hour))
	}
	b.Run("pipeline", func(b *testing.B) { each(b, client, raw) })
	b.Run("store", func(b *testing.B) { each(b, client, ours) })
	b.Run("paired", func(b *testing.B) { paired(b, raw, ours) })
}
