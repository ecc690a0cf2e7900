package memcachedstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
)

// These tests put another client's write exactly between a store's read
// and its CAS, through the beforeWrite hook, so each race the CAS loop
// must win is played every time rather than hoped for.

// raceFixture is a store on one real memcached, with a second store and a
// raw client on the same keys to play the other side of each race.
type raceFixture struct {
	store, other *Store
	raw          *memcache.Client
}

func newRaceFixture(t *testing.T, opts Options) *raceFixture {
	t.Helper()
	srv := testserver.Memcached(t)
	c, _, err := NewClient([]string{srv.Addr}, ClientOptions{Timeout: time.Second}) // generous: a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(c, Options{Prefix: opts.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	return &raceFixture{store: s, other: other, raw: c}
}

func created(t *testing.T, s *Store, values map[string][]byte) string {
	t.Helper()
	id := session.NewID()
	now := time.Now()
	if err := s.Apply(t.Context(), id, session.Delta{Create: true, Set: values, Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Apply(Create) = %v", err)
	}
	return id
}

// once returns a hook that runs f on its first call only, and counts calls.
func once(f func(key string)) (hook func(string), calls *int) {
	n := 0
	return func(key string) {
		n++
		if n == 1 {
			f(key)
		}
	}, &n
}

func TestDeleteBetweenReadAndCASIsNotUndone(t *testing.T) {
	f := newRaceFixture(t, Options{})
	for _, c := range []struct {
		name string
		op   func(id string) error
	}{
		{"Apply", func(id string) error {
			return f.store.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"late": []byte("write")}, Touched: time.Now()})
		}},
		{"Touch", func(id string) error {
			return f.store.Touch(t.Context(), id, time.Now(), time.Now().Add(time.Hour))
		}},
	} {
		id := created(t, f.store, map[string][]byte{"user": []byte("alice")})
		hook, calls := once(func(string) {
			if err := f.other.Delete(t.Context(), id); err != nil {
				t.Errorf("the racing Delete = %v", err)
			}
		})
		f.store.beforeWrite = hook
		err := c.op(id)
		f.store.beforeWrite = nil
		if !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s whose CAS follows a logout's Delete = %v, want ErrNotFound", c.name, err)
		}
		if *calls != 1 {
			t.Errorf("%s made %d write attempts after the Delete, want 1 (a CAS on a deleted item is final, not retried)", c.name, *calls)
		}
		if _, err := f.raw.Get(f.store.prefix + id); !errors.Is(err, memcache.ErrCacheMiss) {
			t.Errorf("after %s lost to a Delete: raw get = %v, want a cache miss (the item must not be re-added)", c.name, err)
		}
	}
}

func TestWriteBetweenReadAndCASIsMerged(t *testing.T) {
	f := newRaceFixture(t, Options{})
	id := created(t, f.store, map[string][]byte{"base": []byte("kept")})
	hook, calls := once(func(string) {
		if err := f.other.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"other": []byte("tab")}}); err != nil {
			t.Errorf("the racing Apply = %v", err)
		}
	})
	f.store.beforeWrite = hook
	if err := f.store.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"mine": []byte("x")}, Del: []string{"base"}}); err != nil {
		t.Fatalf("Apply racing another writer = %v, want nil", err)
	}
	if *calls != 2 {
		t.Errorf("Apply made %d write attempts, want 2 (one lost to the other writer, one on the fresh blob)", *calls)
	}
	rec, err := f.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rec.Values); got != "map[mine:[120] other:[116 97 98]]" {
		t.Errorf("after two racing deltas (Set mine, Del base) and (Set other): values %s, want mine and other only", got)
	}
}

func TestTwoCreatorsMerge(t *testing.T) {
	f := newRaceFixture(t, Options{})
	id := session.NewID()
	now := time.Now()
	hook, calls := once(func(string) {
		if err := f.other.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"first": []byte("1")}, Expires: now.Add(time.Hour)}); err != nil {
			t.Errorf("the racing creator = %v", err)
		}
	})
	f.store.beforeWrite = hook
	err := f.store.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"second": []byte("2")}, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("Apply(Create) racing another creator = %v, want nil", err)
	}
	if *calls != 2 {
		t.Errorf("Apply(Create) made %d write attempts, want 2 (an add that loses, then a cas)", *calls)
	}
	rec, err := f.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Values) != 2 {
		t.Errorf("after two racing creators: values %v, want both first and second (add must not clobber)", rec.Values)
	}
}

func TestConflictRetriesAreBounded(t *testing.T) {
	f := newRaceFixture(t, Options{MaxAttempts: 4, Backoff: time.Microsecond})
	id := created(t, f.store, map[string][]byte{"a": []byte("1")})
	calls := 0
	f.store.beforeWrite = func(string) {
		calls++
		if err := f.other.Apply(t.Context(), id, session.Delta{Touched: time.Now()}); err != nil {
			t.Errorf("the racing writer = %v", err)
		}
	}
	err := f.store.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"b": []byte("2")}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Apply that loses every race = %v, want ErrConflict", err)
	}
	if calls != 4 {
		t.Errorf("Apply made %d attempts, want MaxAttempts = 4", calls)
	}
	f.store.beforeWrite = nil
	rec, err := f.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.Values["b"]; ok {
		t.Error("an Apply that returned ErrConflict wrote its delta anyway")
	}
}

func TestContextEndsBackoff(t *testing.T) {
	f := newRaceFixture(t, Options{MaxAttempts: 1000, Backoff: time.Hour})
	id := created(t, f.store, map[string][]byte{"a": []byte("1")})
	f.store.beforeWrite = func(string) {
		_ = f.other.Apply(context.Background(), id, session.Delta{Touched: time.Now()})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := f.store.Apply(ctx, id, session.Delta{Set: map[string][]byte{"b": []byte("2")}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply whose context ends during an hour-long backoff = %v, want DeadlineExceeded", err)
	}
}

func TestCorruptRecordIsAbsent(t *testing.T) {
	f := newRaceFixture(t, Options{})
	id := session.NewID()
	key := f.store.prefix + id
	good := encode(&session.Record{ID: id, Values: map[string][]byte{"secret": []byte("x")}, Expires: time.Now().Add(time.Hour)})
	for _, c := range []struct {
		name string
		blob []byte
	}{
		{"garbage", []byte("not a session")},
		{"truncated", good[:len(good)-3]},
		{"empty", []byte{}},
	} {
		if err := f.raw.Set(&memcache.Item{Key: key, Value: c.blob, Expiration: 60}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Load(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s: Load = %v, want ErrNotFound", c.name, err)
		}
		if err := f.store.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"a": []byte("1")}}); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s: Apply without Create = %v, want ErrNotFound", c.name, err)
		}
		now := time.Now()
		if err := f.store.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"fresh": []byte("1")}, Created: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Errorf("%s: Apply(Create) over the corrupt item = %v, want nil", c.name, err)
			continue
		}
		rec, err := f.store.Load(t.Context(), id)
		if err != nil || len(rec.Values) != 1 || string(rec.Values["fresh"]) != "1" {
			t.Errorf("%s: after Apply(Create) over a corrupt item: Load = %v, %v; want only fresh=1", c.name, rec, err)
		}
	}
}

func TestRecordUnderAnotherKeyIsNeverServed(t *testing.T) {
	f := newRaceFixture(t, Options{})
	alice := created(t, f.store, map[string][]byte{"user": []byte("alice")})
	it, err := f.raw.Get(f.store.prefix + alice)
	if err != nil {
		t.Fatal(err)
	}
	mallory := session.NewID()
	if err := f.raw.Set(&memcache.Item{Key: f.store.prefix + mallory, Value: it.Value, Expiration: 60}); err != nil {
		t.Fatal(err)
	}
	rec, err := f.store.Load(t.Context(), mallory)
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load of a key holding alice's record = %v, %v; want ErrNotFound, never another session's data", rec, err)
	}
}

func TestUnknownVersionIsAnErrorNotAbsence(t *testing.T) {
	f := newRaceFixture(t, Options{})
	id := session.NewID()
	key := f.store.prefix + id
	future := reseal(append([]byte{formatVersion + 1}, "written by a newer roam"...))
	if err := f.raw.Set(&memcache.Item{Key: key, Value: future, Expiration: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Load(t.Context(), id); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Load of a newer format = %v, want ErrUnknownVersion", err)
	}
	now := time.Now()
	if err := f.store.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"a": []byte("1")}, Expires: now.Add(time.Hour)}); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Apply(Create) over a newer format = %v, want ErrUnknownVersion", err)
	}
	if it, err := f.raw.Get(key); err != nil || string(it.Value) != string(future) {
		t.Errorf("after the refused writes: raw get = %v; want the newer record untouched", err)
	}
}

func TestIDsThatCannotBeKeys(t *testing.T) {
	f := newRaceFixture(t, Options{})
	for _, id := range []string{"", "has space", "new\nline", strings.Repeat("x", 300)} {
		if _, err := f.store.Load(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Load(%q) = %v, want ErrNotFound", id, err)
		}
		if err := f.store.Apply(t.Context(), id, session.Delta{Set: map[string][]byte{"a": nil}}); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Apply(%q) without Create = %v, want ErrNotFound", id, err)
		}
		if err := f.store.Apply(t.Context(), id, session.Delta{Create: true}); err == nil || errors.Is(err, session.ErrNotFound) {
			t.Errorf("Apply(%q, Create) = %v, want an error other than ErrNotFound", id, err)
		}
		if err := f.store.Delete(t.Context(), id); err != nil {
			t.Errorf("Delete(%q) = %v, want nil (nothing can exist under it)", id, err)
		}
	}
}

func TestNewValidatesOptions(t *testing.T) {
	c := memcache.New("127.0.0.1:1")
	for _, o := range []Options{
		{Prefix: "has space"},
		{Prefix: strings.Repeat("p", 250)},
		{MaxAttempts: -1},
		{Backoff: -time.Second},
	} {
		if _, err := New(c, o); err == nil {
			t.Errorf("New(%+v) = nil error, want the invalid option named", o)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil client) = nil error")
	}
}
