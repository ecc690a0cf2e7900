package storetest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/roamsession/roam/session"
)

// checkLoadSaveDelete: a created session loads back field by field, and
// Delete removes it; deleting again, or deleting an id never seen, is fine.
func checkLoadSaveDelete(ctx context.Context, s session.Store, o *Options) error {
	id := session.NewID()
	now := time.Now()
	d := session.Delta{
		Create:       true,
		Set:          vals("user", "alice", "counter", "7", "empty", ""),
		SetPrincipal: true,
		Principal:    "alice",
		Created:      now.Add(-time.Minute),
		Touched:      now,
		Expires:      now.Add(time.Hour),
	}
	w := want{Values: cloneVals(d.Set), Principal: "alice", Created: d.Created, Touched: d.Touched, Expires: d.Expires}
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create) of a new session = %w, want nil", err)
	}
	if err := wantRecord(ctx, s, o, id, "Apply(Create)", w); err != nil {
		return err
	}
	if err := s.Delete(ctx, id); err != nil {
		return fmt.Errorf("Delete of a live session = %w, want nil", err)
	}
	if err := wantNotFound(ctx, s, id, "Delete"); err != nil {
		return err
	}
	if err := s.Delete(ctx, id); err != nil {
		return fmt.Errorf("second Delete of the same id = %w, want nil (deleting an absent id is not an error)", err)
	}
	if err := s.Delete(ctx, session.NewID()); err != nil {
		return fmt.Errorf("Delete of an id never created = %w, want nil", err)
	}
	return nil
}

// checkNotFound: Load of an unknown id fails with ErrNotFound, not some
// other error and not an empty record.
func checkNotFound(ctx context.Context, s session.Store, o *Options) error {
	if err := wantNotFound(ctx, s, session.NewID(), "nothing (an id never created)"); err != nil {
		return err
	}
	// Still absent when the store holds other sessions.
	if _, err := create(ctx, s, vals("a", "1"), ""); err != nil {
		return err
	}
	return wantNotFound(ctx, s, session.NewID(), "creating another session")
}

// checkDeltaSet: Set adds and replaces attributes and leaves the others,
// the principal and the deadlines alone.
func checkDeltaSet(ctx context.Context, s session.Store, o *Options) error {
	d := newSession(vals("a", "1", "b", "2"), "alice")
	id := session.NewID()
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	if err := s.Apply(ctx, id, session.Delta{Set: vals("b", "22", "c", "3")}); err != nil {
		return fmt.Errorf("Apply(Set b, c) = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, id, `Apply(Set b="22" c="3") to {a="1" b="2"}`, want{
		Values: vals("a", "1", "b", "22", "c", "3"), Principal: "alice",
		Created: d.Created, Touched: d.Touched, Expires: d.Expires,
	})
}

// checkDeltaDel: Del removes the named attributes, ignores absent ones, and
// a session whose attributes are all deleted still exists.
func checkDeltaDel(ctx context.Context, s session.Store, o *Options) error {
	id, err := create(ctx, s, vals("a", "1", "b", "2", "c", "3"), "")
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{Del: []string{"b", "never-set"}}); err != nil {
		return fmt.Errorf("Apply(Del b, never-set) = %w, want nil (absent keys are ignored)", err)
	}
	if err := wantRecord(ctx, s, o, id, "Apply(Del b, never-set) to {a b c}", want{Values: vals("a", "1", "c", "3")}); err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{Del: []string{"a", "c"}}); err != nil {
		return fmt.Errorf("Apply(Del a, c) = %w, want nil", err)
	}
	// A backend that keeps attributes as hash fields or rows must still know
	// the session exists when the last one goes.
	return wantRecord(ctx, s, o, id, "deleting every attribute (the session itself must remain)", want{Values: map[string][]byte{}})
}

// checkDeltaSetAndDel: one delta that sets some keys and deletes others
// does both.
func checkDeltaSetAndDel(ctx context.Context, s session.Store, o *Options) error {
	id, err := create(ctx, s, vals("a", "1", "b", "2", "c", "3"), "")
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, id, session.Delta{Set: vals("a", "11", "d", "4"), Del: []string{"b"}}); err != nil {
		return fmt.Errorf("Apply(Set a d, Del b) = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, id, `Apply(Set a="11" d="4", Del b) to {a b c}`, want{Values: vals("a", "11", "c", "3", "d", "4")})
}

// checkDeltaPrincipal: the principal changes only with SetPrincipal, and
// can be cleared.
func checkDeltaPrincipal(ctx context.Context, s session.Store, o *Options) error {
	id, err := create(ctx, s, vals("a", "1"), "alice")
	if err != nil {
		return err
	}
	steps := []struct {
		what string
		d    session.Delta
		want string
	}{
		{"Apply(Set x) without SetPrincipal", session.Delta{Set: vals("x", "1")}, "alice"},
		{"Apply(SetPrincipal bob)", session.Delta{SetPrincipal: true, Principal: "bob"}, "bob"},
		{`Apply(Principal "eve") without SetPrincipal`, session.Delta{Principal: "eve", Set: vals("y", "1")}, "bob"},
		{`Apply(SetPrincipal "")`, session.Delta{SetPrincipal: true, Principal: ""}, ""},
	}
	for _, st := range steps {
		if err := s.Apply(ctx, id, st.d); err != nil {
			return fmt.Errorf("%s = %w, want nil", st.what, err)
		}
		rec, err := load(ctx, s, id, st.what)
		if err != nil {
			return err
		}
		if rec.Principal != st.want {
			return fmt.Errorf("after %s: Principal = %q, want %q", st.what, rec.Principal, st.want)
		}
	}
	return nil
}

// checkDeltaDeadlines: Touched and Expires change when a delta sets them
// and stay when it leaves them zero; Created changes only on creation.
func checkDeltaDeadlines(ctx context.Context, s session.Store, o *Options) error {
	d := newSession(vals("a", "1"), "")
	id := session.NewID()
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	t1 := d.Touched.Add(3 * time.Second)
	e1 := d.Expires.Add(7 * time.Second)
	if err := s.Apply(ctx, id, session.Delta{Touched: t1, Expires: e1}); err != nil {
		return fmt.Errorf("deadline-only Apply(Touched, Expires) = %w, want nil", err)
	}
	if err := wantRecord(ctx, s, o, id, "deadline-only Apply(Touched +3s, Expires +7s)", want{
		Values: vals("a", "1"), Created: d.Created, Touched: t1, Expires: e1,
	}); err != nil {
		return err
	}
	later := d.Created.Add(time.Hour)
	if err := s.Apply(ctx, id, session.Delta{Set: vals("b", "2"), Created: later}); err != nil {
		return fmt.Errorf("Apply(Set b, Created) without Create = %w, want nil", err)
	}
	if err := wantRecord(ctx, s, o, id, "Apply(Set b, Created +1h) without Create (zero Touched and Expires)", want{
		Values: vals("a", "1", "b", "2"), Created: d.Created, Touched: t1, Expires: e1,
	}); err != nil {
		return err
	}
	t2 := t1.Add(time.Second)
	if err := s.Apply(ctx, id, session.Delta{Touched: t2}); err != nil {
		return fmt.Errorf("Apply(Touched only) = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, id, "Apply(Touched only)", want{Created: d.Created, Touched: t2, Expires: e1})
}

// checkCreateOnLive: Create on an existing live session merges like a
// plain Apply instead of replacing the record.
func checkCreateOnLive(ctx context.Context, s session.Store, o *Options) error {
	id, err := create(ctx, s, vals("a", "1", "b", "2"), "alice")
	if err != nil {
		return err
	}
	d := newSession(vals("c", "3"), "")
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create, Set c) on a live session = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, id, "Apply(Create, Set c) on a live session {a b} of alice", want{
		Values: vals("a", "1", "b", "2", "c", "3"), Principal: "alice",
	})
}

// checkApplyWithoutCreate: Apply without Create on an absent or deleted id
// fails with ErrNotFound and leaves nothing behind, whatever the delta holds.
func checkApplyWithoutCreate(ctx context.Context, s session.Store, o *Options) error {
	now := time.Now()
	deltas := []struct {
		what string
		d    session.Delta
	}{
		{"Set", session.Delta{Set: vals("a", "1")}},
		{"Del", session.Delta{Del: []string{"a"}}},
		{"SetPrincipal", session.Delta{SetPrincipal: true, Principal: "mallory"}},
		{"deadlines", session.Delta{Touched: now, Expires: now.Add(time.Hour)}},
		{"empty delta", session.Delta{}},
	}
	absent := session.NewID()
	deleted, err := create(ctx, s, vals("a", "1"), "mallory")
	if err != nil {
		return err
	}
	if err := s.Delete(ctx, deleted); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	for _, target := range []struct{ what, id string }{{"an absent id", absent}, {"a deleted id", deleted}} {
		for _, dd := range deltas {
			if err := wantApplyNotFound(ctx, s, target.id, dd.d, target.what+" ("+dd.what+")"); err != nil {
				return err
			}
			if err := wantNotFound(ctx, s, target.id, "a refused Apply("+dd.what+") to "+target.what); err != nil {
				return err
			}
		}
	}
	if idx, ok := o.index(s); ok {
		ids, err := idx.FindByPrincipal(ctx, "mallory")
		if err != nil {
			return fmt.Errorf("FindByPrincipal: %w", err)
		}
		if len(ids) != 0 {
			return fmt.Errorf("after refused Apply(SetPrincipal mallory) to absent and deleted ids: FindByPrincipal(mallory) = %d ids, want none", len(ids))
		}
	}
	if l, ok := o.lister(s); ok {
		n, err := l.Count(ctx)
		if err != nil {
			return fmt.Errorf("Count: %w", err)
		}
		if n != 0 {
			return fmt.Errorf("after only refused Applies (and one deleted session): Count = %d, want 0", n)
		}
	}
	return nil
}

// checkRenew: renewing an id the way the Manager does at login (create the
// new id with every value and the principal, delete the old one) leaves the
// data only under the new id, and the old id cannot be written again.
func checkRenew(ctx context.Context, s session.Store, o *Options) error {
	old, err := create(ctx, s, vals("cart", "3 items", "theme", "dark"), "")
	if err != nil {
		return err
	}
	rec, err := load(ctx, s, old, "creating the anonymous session")
	if err != nil {
		return err
	}
	now := time.Now()
	renewed := session.NewID()
	d := session.Delta{
		Create: true, Set: rec.Values, SetPrincipal: true, Principal: "alice",
		Created: now, Touched: now, Expires: now.Add(time.Hour),
	}
	wantVals := cloneVals(rec.Values)
	if err := s.Apply(ctx, renewed, d); err != nil {
		return fmt.Errorf("renew: Apply(new id, Create, all values) = %w, want nil", err)
	}
	if err := s.Delete(ctx, old); err != nil {
		return fmt.Errorf("renew: Delete(old id) = %w, want nil", err)
	}
	if err := wantNotFound(ctx, s, old, "renew"); err != nil {
		return err
	}
	if err := wantApplyNotFound(ctx, s, old, session.Delta{Set: vals("late", "write")}, "the old id after renew"); err != nil {
		return err
	}
	if err := wantRecord(ctx, s, o, renewed, "renew", want{Values: wantVals, Principal: "alice", Created: now}); err != nil {
		return err
	}
	if idx, ok := o.index(s); ok {
		ids, err := idx.FindByPrincipal(ctx, "alice")
		if err != nil {
			return fmt.Errorf("FindByPrincipal after renew: %w", err)
		}
		if !slices.Equal(ids, []string{renewed}) {
			return fmt.Errorf("after renew: FindByPrincipal(alice) = %s, want only the new id %s", shortIDs(ids), short(renewed))
		}
	}
	return nil
}

// shortIDs prints a list of ids for a message.
func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return fmt.Sprint(out)
}
