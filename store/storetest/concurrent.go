package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roamsession/roam/session"
)

// checkConcurrentKeys: goroutines writing different keys of one session at
// once all keep their writes. This is the lost update of stores that save
// the whole record (two tabs of one user, each request saving its blob).
func checkConcurrentKeys(ctx context.Context, s session.Store, o *Options) error {
	const writers, deltas = 8, 50
	id, err := create(ctx, s, vals("base", "kept"), "")
	if err != nil {
		return err
	}
	err = parallel(writers, func(w int) error {
		for i := range deltas {
			d := session.Delta{
				Set: map[string][]byte{
					fmt.Sprintf("w%d-%d", w, i): []byte(fmt.Sprintf("writer %d delta %d", w, i)),
					fmt.Sprintf("last-w%d", w):  []byte(strconv.Itoa(i)),
				},
				Touched: time.Now(),
			}
			if err := s.Apply(ctx, id, d); err != nil {
				return fmt.Errorf("writer %d: Apply delta %d = %w, want nil", w, i, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	expect := vals("base", "kept")
	for w := range writers {
		for i := range deltas {
			expect[fmt.Sprintf("w%d-%d", w, i)] = []byte(fmt.Sprintf("writer %d delta %d", w, i))
		}
		expect[fmt.Sprintf("last-w%d", w)] = []byte(strconv.Itoa(deltas - 1))
	}
	return wantRecord(ctx, s, o, id, fmt.Sprintf("%d goroutines × %d deltas, each to its own keys", writers, deltas), want{Values: expect})
}

// oneKeyValue is the value writer w writes in its i-th write: a header that
// names it and a body that depends on it, so any mix of two writes is seen.
func oneKeyValue(w, i int) []byte {
	header := fmt.Sprintf("w%02d i%03d|", w, i)
	return append([]byte(header), pattern(2048, byte(w*53+i))...)
}

// parseOneKey returns which write v is, or ok false when v is not exactly
// one of the values oneKeyValue makes.
func parseOneKey(v []byte) (w, i int, ok bool) {
	if _, err := fmt.Sscanf(string(v[:min(len(v), 10)]), "w%02d i%03d|", &w, &i); err != nil {
		return 0, 0, false
	}
	return w, i, bytes.Equal(v, oneKeyValue(w, i))
}

// checkConcurrentOneKey: writers racing on one key leave one of the written
// values, whole, and the last write of some writer wins. Readers loading
// meanwhile only ever see whole values.
func checkConcurrentOneKey(ctx context.Context, s session.Store, o *Options) error {
	const writers, writes, readers = 8, 50, 2
	id, err := create(ctx, s, map[string][]byte{"k": oneKeyValue(0, 0)}, "")
	if err != nil {
		return err
	}
	var done atomic.Bool
	var bad errList
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			for n := 0; n < 2000 && !done.Load(); n++ {
				rec, err := s.Load(ctx, id)
				if err != nil {
					bad.add(fmt.Errorf("reader %d: Load during the writes = %w, want the session", r, err))
					return
				}
				if _, _, ok := parseOneKey(rec.Values["k"]); !ok {
					bad.add(fmt.Errorf("reader %d saw a torn value: %s is none of the values written", r, q(rec.Values["k"])))
					return
				}
			}
		})
	}
	err = parallel(writers, func(w int) error {
		for i := range writes {
			if err := s.Apply(ctx, id, session.Delta{Set: map[string][]byte{"k": oneKeyValue(w, i)}}); err != nil {
				return fmt.Errorf("writer %d: Apply write %d = %w, want nil", w, i, err)
			}
		}
		return nil
	})
	done.Store(true)
	rg.Wait()
	if err := errors.Join(err, bad.err()); err != nil {
		return err
	}
	rec, err := load(ctx, s, id, "the racing writes")
	if err != nil {
		return err
	}
	w, i, ok := parseOneKey(rec.Values["k"])
	if !ok {
		return fmt.Errorf("after %d writers × %d writes to one key: value %s is none of the values written (torn or corrupted)", writers, writes, q(rec.Values["k"]))
	}
	// Each writer writes in order, so whichever write was applied last is
	// some writer's last one.
	if i != writes-1 {
		return fmt.Errorf("after %d writers × %d writes to one key: final value is writer %d's write %d, want the last write (%d) of some writer: a write was applied out of order or lost", writers, writes, w, i, writes-1)
	}
	return nil
}

// checkDeltaIsAtomic: a reader sees all of a delta or none of it, never
// some keys old and some new.
func checkDeltaIsAtomic(ctx context.Context, s session.Store, o *Options) error {
	const keys, gens, readers = 8, 100, 3
	genDelta := func(g int) session.Delta {
		d := session.Delta{Set: map[string][]byte{fmt.Sprintf("marker-%d", g): []byte("x")}}
		if g > 0 {
			d.Del = []string{fmt.Sprintf("marker-%d", g-1)}
		}
		for k := range keys {
			d.Set[fmt.Sprintf("g%d", k)] = []byte(strconv.Itoa(g))
		}
		return d
	}
	first := genDelta(0)
	id, err := create(ctx, s, first.Set, "")
	if err != nil {
		return err
	}
	var done atomic.Bool
	var bad errList
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			for n := 0; n < 2000 && !done.Load(); n++ {
				rec, err := s.Load(ctx, id)
				if err != nil {
					bad.add(fmt.Errorf("reader %d: Load during the writes = %w, want the session", r, err))
					return
				}
				if err := consistentGen(rec, keys); err != nil {
					bad.add(fmt.Errorf("reader %d saw part of a delta: %w (record %s)", r, err, describe(rec)))
					return
				}
			}
		})
	}
	var werr error
	for g := 1; g < gens; g++ {
		if werr = s.Apply(ctx, id, genDelta(g)); werr != nil {
			werr = fmt.Errorf("Apply generation %d = %w, want nil", g, werr)
			break
		}
	}
	done.Store(true)
	rg.Wait()
	if err := errors.Join(werr, bad.err()); err != nil {
		return err
	}
	rec, err := load(ctx, s, id, "the writes")
	if err != nil {
		return err
	}
	return consistentGen(rec, keys)
}

// consistentGen checks that every g key and the one marker name the same
// generation.
func consistentGen(rec *session.Record, keys int) error {
	g0 := string(rec.Values["g0"])
	for k := 1; k < keys; k++ {
		if g := string(rec.Values[fmt.Sprintf("g%d", k)]); g != g0 {
			return fmt.Errorf("g0 = %q but g%d = %q", g0, k, g)
		}
	}
	markers := 0
	for k := range rec.Values {
		if len(k) > 7 && k[:7] == "marker-" {
			markers++
			if k[7:] != g0 {
				return fmt.Errorf("generation %q with key %q", g0, k)
			}
		}
	}
	if markers != 1 {
		return fmt.Errorf("%d marker keys in generation %q, want exactly 1 (a delta's Set and Del are one change)", markers, g0)
	}
	return nil
}

// checkDeleteIsFinal: a session deleted while other goroutines keep
// writing to it (a logout racing the user's other tabs) stays deleted. A
// write without Create that starts after Delete returned must fail with
// ErrNotFound; ones that overlap it may succeed or fail, but nothing
// brings the session back. Every writer makes at least one write after
// Delete returned, however the goroutines happen to be scheduled.
func checkDeleteIsFinal(ctx context.Context, s session.Store, o *Options) error {
	const rounds, writers, attempts = 20, 4, 100
	t, hasTouch := o.toucher(s)
	for round := range rounds {
		id, err := create(ctx, s, vals("user", "alice"), "")
		if err != nil {
			return err
		}
		deleted := make(chan struct{})
		isDeleted := func() bool {
			select {
			case <-deleted:
				return true
			default:
				return false
			}
		}
		var started, wg sync.WaitGroup
		var bad errList
		started.Add(writers)
		for w := range writers {
			wg.Go(func() {
				var once sync.Once
				defer once.Do(started.Done)
				for n := 0; ; n++ {
					if n == attempts {
						// Done racing: wait for Delete, then write once more.
						select {
						case <-deleted:
						case <-ctx.Done():
							return
						}
					}
					after := isDeleted()
					var err error
					now := time.Now()
					if hasTouch && w%2 == 1 {
						err = t.Touch(ctx, id, now, now.Add(time.Hour))
					} else {
						err = s.Apply(ctx, id, session.Delta{Set: vals(fmt.Sprintf("w%d", w), strconv.Itoa(n)), Touched: now})
					}
					once.Do(started.Done)
					switch {
					case errors.Is(err, session.ErrNotFound):
						return
					case err != nil:
						bad.add(fmt.Errorf("round %d writer %d: write racing Delete = %w, want nil or ErrNotFound", round, w, err))
						return
					case after:
						bad.add(fmt.Errorf("round %d writer %d: a write without Create that started after Delete returned succeeded, want ErrNotFound", round, w))
						return
					}
				}
			})
		}
		started.Wait() // every writer has written at least once
		err = s.Delete(ctx, id)
		close(deleted)
		wg.Wait()
		if err != nil {
			return fmt.Errorf("round %d: Delete = %w, want nil", round, err)
		}
		if err := bad.err(); err != nil {
			return err
		}
		if err := wantNotFound(ctx, s, id, fmt.Sprintf("round %d: Delete racing %d writers", round, writers)); err != nil {
			return err
		}
	}
	return nil
}

// checkManySessions: thousands of sessions written and read from parallel
// goroutines are kept apart, counted, and deleted.
func checkManySessions(ctx context.Context, s session.Store, o *Options) error {
	const workers = 8
	n := o.Sessions
	ids := make([]string, n)
	for i := range ids {
		ids[i] = session.NewID()
	}
	each := func(fn func(i int) error) error {
		return parallel(workers, func(w int) error {
			var errs []error
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs = append(errs, err)
					if len(errs) == 3 {
						break
					}
				}
			}
			return errors.Join(errs...)
		})
	}
	err := each(func(i int) error {
		return s.Apply(ctx, ids[i], newSession(vals("i", strconv.Itoa(i), "id", ids[i]), "user"+strconv.Itoa(i%50)))
	})
	if err != nil {
		return fmt.Errorf("creating %d sessions: %w", n, err)
	}
	err = each(func(i int) error {
		rec, err := load(ctx, s, ids[i], fmt.Sprintf("creating %d sessions", n))
		if err != nil {
			return err
		}
		if string(rec.Values["i"]) != strconv.Itoa(i) || string(rec.Values["id"]) != ids[i] || rec.ID != ids[i] {
			return fmt.Errorf("session %d (%s) loaded as %s, another session's data", i, short(ids[i]), describe(rec))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if l, ok := o.lister(s); ok {
		if c, err := l.Count(ctx); err != nil || c != n {
			return fmt.Errorf("after creating %d sessions: Count = %d, %v, want %d, nil", n, c, err, n)
		}
	}
	if err := each(func(i int) error { return s.Delete(ctx, ids[i]) }); err != nil {
		return fmt.Errorf("deleting %d sessions: %w", n, err)
	}
	for i := 0; i < n; i += max(1, n/50) {
		if err := wantNotFound(ctx, s, ids[i], fmt.Sprintf("deleting all %d sessions", n)); err != nil {
			return err
		}
	}
	if l, ok := o.lister(s); ok {
		if c, err := l.Count(ctx); err != nil || c != 0 {
			return fmt.Errorf("after deleting all %d sessions: Count = %d, %v, want 0, nil", n, c, err)
		}
	}
	return nil
}
