package memstore_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// smallSession is what the demo app keeps: a user, a counter and a flash
// message, about 60 bytes.
func smallSession() map[string][]byte {
	return map[string][]byte{
		"user":    []byte(`"alice"`),
		"counter": []byte("42"),
		"flash":   []byte(`"Welcome back, alice!"`),
	}
}

// populate fills s with n small sessions and returns their ids.
func populate(b *testing.B, s *memstore.Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	now := time.Now()
	for i := range ids {
		ids[i] = session.NewID()
		d := session.Delta{Create: true, Set: smallSession(), SetPrincipal: true, Principal: "user" + strconv.Itoa(i),
			Created: now, Touched: now, Expires: now.Add(time.Hour)}
		if err := s.Apply(context.Background(), ids[i], d); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

func newBenchStore(b *testing.B) *memstore.Store {
	s := memstore.New(memstore.Options{})
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkLoad is the read path of every request: one small session out of
// 10 000.
func BenchmarkLoad(b *testing.B) {
	s := newBenchStore(b)
	ids := populate(b, s, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Load(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkLoadParallel(b *testing.B) {
	s := newBenchStore(b)
	ids := populate(b, s, 10_000)
	ctx := context.Background()
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			if _, err := s.Load(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkApply1Key is the write path of a request that changed one
// attribute (the demo's counter) and moved the idle deadline.
func BenchmarkApply1Key(b *testing.B) {
	s := newBenchStore(b)
	ids := populate(b, s, 10_000)
	ctx := context.Background()
	value := []byte("43")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now := time.Now()
		d := session.Delta{Set: map[string][]byte{"counter": value}, Touched: now, Expires: now.Add(time.Hour)}
		if err := s.Apply(ctx, ids[i%len(ids)], d); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkApply1KeyParallel(b *testing.B) {
	s := newBenchStore(b)
	ids := populate(b, s, 10_000)
	ctx := context.Background()
	value := []byte("43")
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			now := time.Now()
			d := session.Delta{Set: map[string][]byte{"counter": value}, Touched: now, Expires: now.Add(time.Hour)}
			if err := s.Apply(ctx, ids[i%len(ids)], d); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkMixedParallel is a request mix: every request loads, one in four
// also writes a 1-key delta.
func BenchmarkMixedParallel(b *testing.B) {
	s := newBenchStore(b)
	ids := populate(b, s, 10_000)
	ctx := context.Background()
	value := []byte("43")
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			id := ids[i%len(ids)]
			if _, err := s.Load(ctx, id); err != nil {
				b.Error(err)
				return
			}
			if i%4 == 0 {
				if err := s.Apply(ctx, id, session.Delta{Set: map[string][]byte{"counter": value}}); err != nil {
					b.Error(err)
					return
				}
			}
			i++
		}
	})
}
