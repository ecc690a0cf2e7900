package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/roamsession/roam/session"
)

// checkTouch: Touch moves Touched and Expires and nothing else, and fails
// with ErrNotFound, creating nothing, for an absent or deleted id.
func checkTouch(ctx context.Context, s session.Store, o *Options) error {
	t := s.(session.Toucher)
	d := newSession(vals("a", "1"), "alice")
	id := session.NewID()
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	touched, expires := d.Touched.Add(5*time.Second), d.Expires.Add(30*time.Second)
	if err := t.Touch(ctx, id, touched, expires); err != nil {
		return fmt.Errorf("Touch of a live session = %w, want nil", err)
	}
	if err := wantRecord(ctx, s, o, id, "Touch(+5s, +30s)", want{
		Values: vals("a", "1"), Principal: "alice", Created: d.Created, Touched: touched, Expires: expires,
	}); err != nil {
		return err
	}
	deleted, err := create(ctx, s, vals("a", "1"), "")
	if err != nil {
		return err
	}
	if err := s.Delete(ctx, deleted); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	for _, target := range []struct{ what, id string }{{"an absent id", session.NewID()}, {"a deleted id", deleted}} {
		err := t.Touch(ctx, target.id, touched, expires)
		if !errors.Is(err, session.ErrNotFound) {
			return fmt.Errorf("Touch of %s = %v, want an error wrapping ErrNotFound", target.what, err)
		}
		if err := wantNotFound(ctx, s, target.id, "Touch of "+target.what); err != nil {
			return err
		}
	}
	return nil
}

// find returns FindByPrincipal(p), sorted, or an error naming p.
func find(ctx context.Context, idx session.PrincipalIndex, p string) ([]string, error) {
	ids, err := idx.FindByPrincipal(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("FindByPrincipal(%q) = %w, want nil", p, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// wantFind checks that FindByPrincipal(p) returns exactly ids.
func wantFind(ctx context.Context, idx session.PrincipalIndex, p, after string, ids ...string) error {
	got, err := find(ctx, idx, p)
	if err != nil {
		return fmt.Errorf("after %s: %w", after, err)
	}
	ids = slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, ids) {
		return fmt.Errorf("after %s: FindByPrincipal(%q) = %s, want %s", after, p, shortIDs(got), shortIDs(ids))
	}
	return nil
}

// checkPrincipalIndex: FindByPrincipal finds exactly a principal's sessions
// and DeleteByPrincipal destroys exactly them; the anonymous principal ""
// is never indexed.
func checkPrincipalIndex(ctx context.Context, s session.Store, o *Options) error {
	idx := s.(session.PrincipalIndex)
	var alice []string
	for i := range 3 {
		id, err := create(ctx, s, vals("device", strconv.Itoa(i)), "alice")
		if err != nil {
			return err
		}
		alice = append(alice, id)
	}
	bob, err := create(ctx, s, vals("device", "0"), "bob")
	if err != nil {
		return err
	}
	anon, err := create(ctx, s, vals("cart", "1"), "")
	if err != nil {
		return err
	}
	// A principal that is a prefix of another must not match it.
	alic, err := create(ctx, s, nil, "alic")
	if err != nil {
		return err
	}
	setup := "3 sessions of alice, 1 of bob, 1 of alic, 1 anonymous"
	if err := wantFind(ctx, idx, "alice", setup, alice...); err != nil {
		return err
	}
	if err := wantFind(ctx, idx, "bob", setup, bob); err != nil {
		return err
	}
	if err := wantFind(ctx, idx, "nobody", setup); err != nil {
		return err
	}
	if err := wantFind(ctx, idx, "", setup+" (the anonymous principal is not indexed)"); err != nil {
		return err
	}
	if n, err := idx.DeleteByPrincipal(ctx, ""); err != nil || n != 0 {
		return fmt.Errorf("DeleteByPrincipal(\"\") = %d, %v, want 0, nil: anonymous sessions are not a principal's", n, err)
	}
	if _, err := load(ctx, s, anon, `DeleteByPrincipal("")`); err != nil {
		return err
	}
	if n, err := idx.DeleteByPrincipal(ctx, "nobody"); err != nil || n != 0 {
		return fmt.Errorf("DeleteByPrincipal(nobody) = %d, %v, want 0, nil", n, err)
	}
	if n, err := idx.DeleteByPrincipal(ctx, "alice"); err != nil || n != 3 {
		return fmt.Errorf("DeleteByPrincipal(alice) with 3 sessions = %d, %v, want 3, nil", n, err)
	}
	for _, id := range alice {
		if err := wantNotFound(ctx, s, id, "DeleteByPrincipal(alice)"); err != nil {
			return err
		}
		if err := wantApplyNotFound(ctx, s, id, session.Delta{Set: vals("late", "1")}, "a session destroyed by DeleteByPrincipal"); err != nil {
			return err
		}
	}
	if err := wantFind(ctx, idx, "alice", "DeleteByPrincipal(alice)"); err != nil {
		return err
	}
	for _, id := range []string{bob, anon, alic} {
		if _, err := load(ctx, s, id, "DeleteByPrincipal(alice) (other principals' and anonymous sessions stay)"); err != nil {
			return err
		}
	}
	if n, err := idx.DeleteByPrincipal(ctx, "alice"); err != nil || n != 0 {
		return fmt.Errorf("second DeleteByPrincipal(alice) = %d, %v, want 0, nil", n, err)
	}
	return nil
}

// checkPrincipalChange: the index follows a session's principal through
// changes and deletion.
func checkPrincipalChange(ctx context.Context, s session.Store, o *Options) error {
	idx := s.(session.PrincipalIndex)
	id, err := create(ctx, s, vals("a", "1"), "alice")
	if err != nil {
		return err
	}
	other, err := create(ctx, s, vals("a", "2"), "alice")
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{SetPrincipal: true, Principal: "bob"}); err != nil {
		return fmt.Errorf("Apply(SetPrincipal bob): %w", err)
	}
	if err := wantFind(ctx, idx, "alice", "moving one of alice's two sessions to bob", other); err != nil {
		return err
	}
	if err := wantFind(ctx, idx, "bob", "moving one of alice's two sessions to bob", id); err != nil {
		return err
	}
	// A delta without SetPrincipal must not disturb the index.
	if err := s.Apply(ctx, id, session.Delta{Set: vals("b", "1"), Principal: "alice"}); err != nil {
		return fmt.Errorf("Apply(Set b): %w", err)
	}
	if err := wantFind(ctx, idx, "bob", "a delta without SetPrincipal", id); err != nil {
		return err
	}
	if n, err := idx.DeleteByPrincipal(ctx, "alice"); err != nil || n != 1 {
		return fmt.Errorf("DeleteByPrincipal(alice) after moving one session to bob = %d, %v, want 1, nil", n, err)
	}
	if _, err := load(ctx, s, id, "DeleteByPrincipal(alice) (the session moved to bob stays)"); err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{SetPrincipal: true, Principal: ""}); err != nil {
		return fmt.Errorf(`Apply(SetPrincipal ""): %w`, err)
	}
	if err := wantFind(ctx, idx, "bob", `clearing the principal with SetPrincipal ""`); err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{SetPrincipal: true, Principal: "carol"}); err != nil {
		return fmt.Errorf("Apply(SetPrincipal carol): %w", err)
	}
	if err := s.Delete(ctx, id); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	if err := wantFind(ctx, idx, "carol", "Delete of carol's session"); err != nil {
		return err
	}
	if n, err := idx.DeleteByPrincipal(ctx, "carol"); err != nil || n != 0 {
		return fmt.Errorf("DeleteByPrincipal(carol) after her only session was deleted = %d, %v, want 0, nil", n, err)
	}
	return nil
}

// rangeIDs collects the ids Range reports and fails on duplicates.
func rangeIDs(ctx context.Context, l session.Lister) (map[string]*session.Record, error) {
	seen := map[string]*session.Record{}
	var dup string
	err := l.Range(ctx, func(r *session.Record) bool {
		if _, ok := seen[r.ID]; ok {
			dup = r.ID
			return false
		}
		seen[r.ID] = r
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("Range = %w, want nil", err)
	}
	if dup != "" {
		return nil, fmt.Errorf("Range reported %s twice", short(dup))
	}
	return seen, nil
}

// checkLister: Count counts and Range visits every live session once, with
// its data, and Range stops when fn returns false.
func checkLister(ctx context.Context, s session.Store, o *Options) error {
	l := s.(session.Lister)
	if n, err := l.Count(ctx); err != nil || n != 0 {
		return fmt.Errorf("Count of a new store = %d, %v, want 0, nil", n, err)
	}
	if got, err := rangeIDs(ctx, l); err != nil || len(got) != 0 {
		return fmt.Errorf("Range of a new store visited %d sessions (err %v), want none", len(got), err)
	}
	const n = 20
	ids := map[string]int{}
	for i := range n {
		id, err := create(ctx, s, vals("i", strconv.Itoa(i)), "p"+strconv.Itoa(i%3))
		if err != nil {
			return err
		}
		ids[id] = i
	}
	if c, err := l.Count(ctx); err != nil || c != n {
		return fmt.Errorf("Count with %d sessions = %d, %v, want %d, nil", n, c, err, n)
	}
	got, err := rangeIDs(ctx, l)
	if err != nil {
		return err
	}
	if len(got) != n {
		return fmt.Errorf("Range with %d sessions visited %d", n, len(got))
	}
	for id, i := range ids {
		r, ok := got[id]
		if !ok {
			return fmt.Errorf("Range did not visit session %s", short(id))
		}
		if err := matchRecord(r, o, id, "Range", want{Values: vals("i", strconv.Itoa(i)), Principal: "p" + strconv.Itoa(i%3)}); err != nil {
			return err
		}
	}
	calls := 0
	if err := l.Range(ctx, func(*session.Record) bool { calls++; return false }); err != nil {
		return fmt.Errorf("Range stopped by fn = %w, want nil", err)
	}
	if calls != 1 {
		return fmt.Errorf("Range called fn %d times after it returned false on the first call, want 1", calls)
	}
	var one string
	for id := range ids {
		one = id
		break
	}
	if err := s.Delete(ctx, one); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	if c, err := l.Count(ctx); err != nil || c != n-1 {
		return fmt.Errorf("Count after deleting 1 of %d sessions = %d, %v, want %d, nil", n, c, err, n-1)
	}
	got, err = rangeIDs(ctx, l)
	if err != nil {
		return err
	}
	if _, ok := got[one]; ok || len(got) != n-1 {
		return fmt.Errorf("Range after deleting 1 of %d sessions visited %d (the deleted one: %v), want %d without it", n, len(got), ok, n-1)
	}
	return nil
}

// checkRangeMayCallStore: Range's fn can use the store, as an admin page
// that expires idle sessions does; a store that holds a lock across fn
// deadlocks here.
func checkRangeMayCallStore(ctx context.Context, s session.Store, o *Options) error {
	l := s.(session.Lister)
	const n = 10
	for i := range n {
		if _, err := create(ctx, s, vals("i", strconv.Itoa(i)), ""); err != nil {
			return err
		}
	}
	var inner []error
	visited := 0
	err := l.Range(ctx, func(r *session.Record) bool {
		visited++
		if _, err := s.Load(ctx, r.ID); err != nil && !errors.Is(err, session.ErrNotFound) {
			inner = append(inner, fmt.Errorf("Load inside Range's fn = %w", err))
		}
		if err := s.Delete(ctx, r.ID); err != nil {
			inner = append(inner, fmt.Errorf("Delete inside Range's fn = %w", err))
		}
		return len(inner) == 0
	})
	if err != nil {
		return fmt.Errorf("Range whose fn loads and deletes = %w, want nil", err)
	}
	if len(inner) > 0 {
		return errors.Join(inner...)
	}
	if visited != n {
		return fmt.Errorf("Range whose fn deletes each session visited %d of %d sessions", visited, n)
	}
	if c, err := l.Count(ctx); err != nil || c != 0 {
		return fmt.Errorf("Count after deleting every session from inside Range = %d, %v, want 0, nil", c, err)
	}
	return nil
}
