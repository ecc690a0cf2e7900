package sqlstore_test

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

// benchSession creates the session the benchmarks read and write: three
// attributes, the shape of a logged-in user of the demo app.
func benchSession(b *testing.B, s *sqlstore.Store) string {
	b.Helper()
	id := session.NewID()
	d := createDelta(map[string][]byte{
		"user":    []byte(`"alice"`),
		"counter": []byte("7"),
		"csrf":    []byte(`"Jm9vYmFyYmF6cXV4cXV1eHh5enp5"`),
	}, "alice")
	if err := s.Apply(context.Background(), id, d); err != nil {
		b.Fatal(err)
	}
	return id
}

// interleave runs bare and store alternately, timing each call, and
// reports the median cost of each and the ratio of the medians. Alternating
// inside one loop means both see the same machine load, and medians ignore
// the calls a busy shared machine descheduled, which would swamp a mean.
func interleave(b *testing.B, bare, store func() error) {
	tb := make([]time.Duration, 0, 1<<14)
	ts := make([]time.Duration, 0, 1<<14)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if err := bare(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := store(); err != nil {
			b.Fatal(err)
		}
		ts = append(ts, time.Since(t1))
		tb = append(tb, t1.Sub(t0))
	}
	mb, ms := median(tb), median(ts)
	b.ReportMetric(float64(mb.Nanoseconds()), "bare-p50-ns")
	b.ReportMetric(float64(ms.Nanoseconds()), "store-p50-ns")
	b.ReportMetric(float64(ms)/float64(mb), "store/bare")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// requestContext is a context like an HTTP request's: cancellable, no
// deadline. Drivers watch such a context during a query (modernc.org/sqlite
// arms an interrupt), so the bare calls get one too, as in a handler.
func requestContext(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkLoad compares Store.Load with the bare query it sends (the same
// SQL text on the same pool, scanned into local variables): what roam adds
// is building the Record. ns/op and allocs count both halves together; read
// bare-p50-ns, store-p50-ns and store/bare.
func BenchmarkLoad(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := openDB(b, be)
			s := newStore(b, db, sqlstore.Options{CleanupInterval: -1})
			id := benchSession(b, s)
			loadSQL, _, _ := sqlstore.Statements(s)
			ctx := requestContext(b)
			bare := func() error {
				rows, err := db.QueryContext(ctx, loadSQL, id, time.Now().UnixMicro())
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var principal, name sql.NullString
					var created, touched, expires int64
					var value []byte
					if err := rows.Scan(&principal, &created, &touched, &expires, &name, &value); err != nil {
						return err
					}
				}
				return rows.Err()
			}
			load := func() error {
				_, err := s.Load(ctx, id)
				return err
			}
			interleave(b, bare, load)
		})
	}
}

// BenchmarkApply compares Store.Apply of a one-key delta (what a request
// that increments a counter sends) with the bare transaction of the same
// two statements: UPDATE of the session row, upsert of the attribute.
func BenchmarkApply(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := openDB(b, be)
			s := newStore(b, db, sqlstore.Options{CleanupInterval: -1})
			id := benchSession(b, s)
			_, updateSQL, upsertSQL := sqlstore.Statements(s)
			ctx := requestContext(b)
			i := 0
			bare := func() error {
				i++
				now := time.Now()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, updateSQL, now.UnixMicro(), now.Add(time.Hour).UnixMicro(), id, now.UnixMicro()); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, upsertSQL, id, "counter", []byte(strconv.Itoa(i))); err != nil {
					return err
				}
				return tx.Commit()
			}
			apply := func() error {
				i++
				now := time.Now()
				return s.Apply(ctx, id, session.Delta{
					Set:     map[string][]byte{"counter": []byte(strconv.Itoa(i))},
					Touched: now, Expires: now.Add(time.Hour),
				})
			}
			interleave(b, bare, apply)
		})
	}
}
