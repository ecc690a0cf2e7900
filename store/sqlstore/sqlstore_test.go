package sqlstore_test

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name string
		db   *sql.DB
		opts sqlstore.Options
		want string // in the error
	}{
		{"nil db", nil, sqlstore.Options{}, "db is nil"},
		{"unknown dialect", db, sqlstore.Options{Dialect: "oracle"}, "Options.Dialect"},
		{"upper-case prefix", db, sqlstore.Options{TablePrefix: "Roam_"}, "Options.TablePrefix"},
		{"quote in prefix", db, sqlstore.Options{TablePrefix: `x"; DROP TABLE y; --`}, "Options.TablePrefix"},
		{"prefix starting with a digit", db, sqlstore.Options{TablePrefix: "1_"}, "Options.TablePrefix"},
		{"long prefix", db, sqlstore.Options{TablePrefix: strings.Repeat("a", 41)}, "Options.TablePrefix"},
		{"negative batch", db, sqlstore.Options{CleanupBatch: -1}, "Options.CleanupBatch"},
	} {
		s, err := sqlstore.New(c.db, c.opts)
		if err == nil {
			s.Close()
			t.Errorf("%s: New succeeded, want an error mentioning %q", c.name, c.want)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %q does not mention %q", c.name, err, c.want)
		}
	}
	s, err := sqlstore.New(db, sqlstore.Options{})
	if err != nil {
		t.Fatalf("New with zero Options on modernc.org/sqlite: %v", err)
	}
	defer s.Close()
	if s.Dialect() != sqlstore.SQLite {
		t.Errorf("Dialect() = %q, want it recognised as %q from the driver", s.Dialect(), sqlstore.SQLite)
	}
}

// TestMigrateIsIdempotentAndConcurrent runs Migrate again on an existing
// schema and from several goroutines at once on a fresh prefix, as app
// instances starting together do, and checks the store works afterwards.
func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		prefix := uniquePrefix()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				s, err := sqlstore.New(db, sqlstore.Options{TablePrefix: prefix, CleanupInterval: -1})
				if err != nil {
					errs[i] = err
					return
				}
				defer s.Close()
				errs[i] = s.Migrate(ctx)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Migrate on a fresh prefix: %v", err)
		}
		s := newStore(t, db, sqlstore.Options{TablePrefix: prefix, CleanupInterval: -1})
		id := session.NewID()
		if err := s.Apply(ctx, id, createDelta(map[string][]byte{"a": []byte("1")}, "")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Migrate on an existing schema: %v", err)
			}
		}
		if rec, err := s.Load(ctx, id); err != nil || string(rec.Values["a"]) != "1" {
			t.Fatalf("after Migrate again: Load = %v, %v; want the session kept", rec, err)
		}
	})
}

func createDelta(values map[string][]byte, principal string) session.Delta {
	now := time.Now()
	return session.Delta{
		Create: true, Set: values, SetPrincipal: principal != "", Principal: principal,
		Created: now, Touched: now, Expires: now.Add(time.Hour),
	}
}

// TestNamesDifferingInCaseOrPaddingStayDistinct: attribute names and
// principals compare byte for byte in every dialect. On MySQL a PAD SPACE
// collation (utf8mb4_bin included) would make "a" and "a " one key, and a
// case-insensitive one "alice" and "Alice" one user.
func TestNamesDifferingInCaseOrPaddingStayDistinct(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		s := newStore(t, db, sqlstore.Options{CleanupInterval: -1})
		keys := []string{"a", "A", "a ", " a", "á", "a\u0301", "ä", "ss", "ß", "ǅ", "Ǆ"}
		values := map[string][]byte{}
		for i, k := range keys {
			values[k] = []byte(fmt.Sprint(i))
		}
		id := session.NewID()
		if err := s.Apply(ctx, id, createDelta(values, "alice")); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if got := string(rec.Values[k]); got != fmt.Sprint(i) {
				t.Errorf("key %q = %q, want %q: keys that differ only in case, accents or padding were merged", k, got, fmt.Sprint(i))
			}
		}
		if len(rec.Values) != len(keys) {
			t.Errorf("loaded %d keys, want %d", len(rec.Values), len(keys))
		}
		if err := s.Apply(ctx, id, session.Delta{Del: []string{"a "}}); err != nil {
			t.Fatal(err)
		}
		if rec, _ := s.Load(ctx, id); rec == nil || rec.Values["a"] == nil || rec.Values["a "] != nil {
			t.Errorf(`after Del "a ": a = %v, "a " = %v; want only "a " gone`, rec.Values["a"], rec.Values["a "])
		}

		others := map[string]string{}
		for _, p := range []string{"alice ", "Alice", "ALICE", "alicé"} {
			oid := session.NewID()
			if err := s.Apply(ctx, oid, createDelta(nil, p)); err != nil {
				t.Fatal(err)
			}
			others[p] = oid
		}
		ids, err := s.FindByPrincipal(ctx, "alice")
		if err != nil || !slices.Equal(ids, []string{id}) {
			t.Errorf("FindByPrincipal(alice) = %v, %v; want only alice's session, not those of %q", ids, err, slices.Sorted(maps.Keys(others)))
		}
		if n, err := s.DeleteByPrincipal(ctx, "alice "); err != nil || n != 1 {
			t.Errorf(`DeleteByPrincipal("alice ") = %d, %v; want 1`, n, err)
		}
		if _, err := s.Load(ctx, id); err != nil {
			t.Errorf(`DeleteByPrincipal("alice ") destroyed alice's session: Load = %v`, err)
		}
	})
}

// TestInvalidNamesAreRefusedAndWriteNothing: what PostgreSQL's TEXT cannot
// hold (NUL bytes, invalid UTF-8) or the schema's limits exceed is refused
// with ErrInvalid in every dialect, before anything is written.
func TestInvalidNamesAreRefusedAndWriteNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		s := newStore(t, db, sqlstore.Options{CleanupInterval: -1})
		id := session.NewID()
		if err := s.Apply(ctx, id, createDelta(map[string][]byte{"a": []byte("1")}, "")); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what string
			d    session.Delta
		}{
			{"a name with a NUL byte", session.Delta{Set: map[string][]byte{"ok": []byte("x"), "nul\x00inside": []byte("x")}}},
			{"a name of invalid UTF-8", session.Delta{Set: map[string][]byte{"\xff\xfe": []byte("x")}}},
			{"an empty name", session.Delta{Set: map[string][]byte{"": []byte("x")}}},
			{"a name over MaxNameLen", session.Delta{Set: map[string][]byte{strings.Repeat("k", sqlstore.MaxNameLen+1): []byte("x")}}},
			{"a principal over MaxPrincipalLen", session.Delta{Set: map[string][]byte{"ok": []byte("x")}, SetPrincipal: true, Principal: strings.Repeat("p", sqlstore.MaxPrincipalLen+1)}},
		} {
			if err := s.Apply(ctx, id, c.d); !errors.Is(err, sqlstore.ErrInvalid) {
				t.Errorf("Apply with %s = %v, want ErrInvalid", c.what, err)
			}
		}
		rec, err := s.Load(ctx, id)
		if err != nil || len(rec.Values) != 1 || rec.Principal != "" {
			t.Errorf("after refused Applies: Load = %+v, %v; want the session unchanged", rec, err)
		}
		if err := s.Apply(ctx, "bad\x00id", createDelta(nil, "")); !errors.Is(err, sqlstore.ErrInvalid) {
			t.Errorf("Apply(Create) with a NUL in the id = %v, want ErrInvalid", err)
		}
		if _, err := s.Load(ctx, "bad\x00id"); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Load of an id the schema cannot hold = %v, want ErrNotFound", err)
		}
		if err := s.Apply(ctx, "bad\x00id", session.Delta{Set: map[string][]byte{"a": nil}}); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Apply without Create to an id the schema cannot hold = %v, want ErrNotFound", err)
		}
		// A name that cannot exist is simply absent for Del.
		if err := s.Apply(ctx, id, session.Delta{Del: []string{"nul\x00", "a"}}); err != nil {
			t.Errorf("Apply(Del of an impossible name and a) = %v, want nil", err)
		}
	})
}

// TestCleanupDeletesExpiredRowsInBatches fills a store with live and
// expired sessions, moves its clock, and checks that DeleteExpired removes
// exactly the expired sessions and all their attribute rows, in batches
// smaller than the backlog.
func TestCleanupDeletesExpiredRowsInBatches(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		var clock atomic.Int64
		clock.Store(time.Now().UnixNano())
		prefix := uniquePrefix()
		s := newStore(t, db, sqlstore.Options{
			TablePrefix: prefix, CleanupInterval: -1, CleanupBatch: 7,
			Now: func() time.Time { return time.Unix(0, clock.Load()) },
		})
		base := time.Unix(0, clock.Load())
		var live []string
		const sessions = 40
		for i := range sessions {
			id := session.NewID()
			d := createDelta(map[string][]byte{"a": []byte("1"), "b": []byte("2"), "c": []byte("3")}, "u")
			d.Expires = base.Add(time.Minute)
			if i%4 == 0 {
				d.Expires = base.Add(time.Hour)
				live = append(live, id)
			}
			if err := s.Apply(ctx, id, d); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.DeleteExpired(ctx); err != nil || n != 0 {
			t.Fatalf("DeleteExpired before anything expired = %d, %v; want 0", n, err)
		}
		clock.Store(base.Add(2 * time.Minute).UnixNano())
		n, err := s.DeleteExpired(ctx)
		if err != nil || n != sessions-len(live) {
			t.Fatalf("DeleteExpired = %d, %v; want %d (every expired session, over several batches of 7)", n, err, sessions-len(live))
		}
		if got := countRows(t, db, prefix+"sessions"); got != len(live) {
			t.Errorf("%d session rows left, want the %d live ones", got, len(live))
		}
		if got := countRows(t, db, prefix+"attributes"); got != 3*len(live) {
			t.Errorf("%d attribute rows left, want %d: expired sessions' attributes must go with them", got, 3*len(live))
		}
		for _, id := range live {
			if _, err := s.Load(ctx, id); err != nil {
				t.Errorf("live session after cleanup: Load = %v", err)
			}
		}
	})
}

// TestCleanupLoopRunsAndStopsOnClose: the loop deletes expired rows on its
// own, Close stops it and is idempotent, every method then returns
// ErrClosed, and the *sql.DB the store was given stays open.
func TestCleanupLoopRunsAndStopsOnClose(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		prefix := uniquePrefix()
		s := newStore(t, db, sqlstore.Options{TablePrefix: prefix, CleanupInterval: 10 * time.Millisecond})
		for range 5 {
			d := createDelta(map[string][]byte{"a": []byte("1")}, "")
			d.Expires = time.Now().Add(-time.Second) // born expired: only the loop will remove it
			if err := s.Apply(ctx, session.NewID(), d); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for countRows(t, db, prefix+"sessions") != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("cleanup loop left %d expired sessions after 10 s", countRows(t, db, prefix+"sessions"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := countRows(t, db, prefix+"attributes"); got != 0 {
			t.Errorf("cleanup left %d attribute rows of deleted sessions", got)
		}
		for range 2 {
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v, want nil", err)
			}
		}
		if _, err := s.Load(ctx, session.NewID()); !errors.Is(err, sqlstore.ErrClosed) {
			t.Errorf("Load after Close = %v, want ErrClosed", err)
		}
		if err := s.Apply(ctx, session.NewID(), createDelta(nil, "")); !errors.Is(err, sqlstore.ErrClosed) {
			t.Errorf("Apply after Close = %v, want ErrClosed", err)
		}
		if _, err := s.DeleteExpired(ctx); !errors.Is(err, sqlstore.ErrClosed) {
			t.Errorf("DeleteExpired after Close = %v, want ErrClosed", err)
		}
		if err := db.PingContext(ctx); err != nil {
			t.Errorf("the store closed the *sql.DB it was given: Ping = %v", err)
		}
	})
}

// TestRangeCrossesPages: Range reads sessions a page at a time and must
// visit each of more sessions than a page holds exactly once, with its own
// attributes, also when fn deletes as it goes.
func TestRangeCrossesPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx := t.Context()
		s := newStore(t, db, sqlstore.Options{CleanupInterval: -1})
		const n = 250
		want := map[string]string{}
		for i := range n {
			id := session.NewID()
			v := fmt.Sprint(i)
			if err := s.Apply(ctx, id, createDelta(map[string][]byte{"i": []byte(v), "j": []byte("x")}, "")); err != nil {
				t.Fatal(err)
			}
			want[id] = v
		}
		seen := map[string]bool{}
		err := s.Range(ctx, func(r *session.Record) bool {
			if seen[r.ID] {
				t.Errorf("Range visited %s twice", session.Fingerprint(r.ID))
			}
			seen[r.ID] = true
			if string(r.Values["i"]) != want[r.ID] || len(r.Values) != 2 {
				t.Errorf("Range: session %s has values %v, want i=%s and j", session.Fingerprint(r.ID), r.Values, want[r.ID])
			}
			if err := s.Delete(ctx, r.ID); err != nil {
				t.Errorf("Delete inside Range: %v", err)
			}
			return true
		})
		if err != nil {
			t.Fatalf("Range = %v", err)
		}
		if len(seen) != n {
			t.Errorf("Range visited %d of %d sessions", len(seen), n)
		}
		if c, err := s.Count(ctx); err != nil || c != 0 {
			t.Errorf("Count after deleting all from Range = %d, %v; want 0", c, err)
		}
	})
}
