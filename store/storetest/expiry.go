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

// A probe reports whether a session is still visible through some method.
type probe func(ctx context.Context) (present bool, err error)

// loadProbe sees a session through Load.
func loadProbe(s session.Store, id string) probe {
	return func(ctx context.Context) (bool, error) {
		_, err := s.Load(ctx, id)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, session.ErrNotFound):
			return false, nil
		}
		return false, fmt.Errorf("Load(%s) = %w, want the session or ErrNotFound", short(id), err)
	}
}

// expectExpiry probes a session that expires at expires until it is gone,
// and fails if it went early (a probe that ended before expires saw it
// absent), went late (a probe that began more than ExpiryGranularity +
// TimePrecision after expires still saw it), or came back.
//
// Because each probe's start and end are compared with the deadline, the
// verdict does not depend on how promptly the test machine schedules us:
// a slow machine only means fewer probes.
func expectExpiry(ctx context.Context, o *Options, what string, expires time.Time, p probe) error {
	late := expires.Add(o.ExpiryGranularity + o.TimePrecision)
	early := expires.Add(-o.TimePrecision)
	for {
		start := time.Now()
		present, err := p(ctx)
		end := time.Now()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !present {
			if end.Before(early) {
				return fmt.Errorf("%s: gone %v before its Expires, want it kept until Expires", what, expires.Sub(end).Round(time.Millisecond))
			}
			again, err := p(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if again {
				return fmt.Errorf("%s: gone after its Expires, then back on the next probe", what)
			}
			return nil
		}
		if start.After(late) {
			return fmt.Errorf("%s: still there %v after its Expires, want it gone (allowed lateness: ExpiryGranularity %v + TimePrecision %v)",
				what, start.Sub(expires).Round(time.Millisecond), o.ExpiryGranularity, o.TimePrecision)
		}
		if err := waitUntil(ctx, time.Now().Add(o.pollEvery())); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// expiring returns a delta that creates a session with values and
// principal that expires after life.
func expiring(values map[string][]byte, principal string, life time.Duration) session.Delta {
	d := newSession(values, principal)
	d.Expires = d.Touched.Add(life)
	return d
}

// checkIdleExpiry: a session whose Expires passes is gone for Load, no
// sooner and no later than the store's granularity allows.
func checkIdleExpiry(ctx context.Context, s session.Store, o *Options) error {
	id := session.NewID()
	d := expiring(vals("a", "1"), "", 2*o.unit())
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	return expectExpiry(ctx, o, "Load of a session left idle past its Expires", d.Expires, loadProbe(s, id))
}

// checkAbsoluteExpiry: activity that does not set Expires (the absolute
// lifetime is reached, so the Manager stops extending it) does not keep a
// session alive: a backend that refreshes its TTL on every write fails.
func checkAbsoluteExpiry(ctx context.Context, s session.Store, o *Options) error {
	id := session.NewID()
	d := expiring(vals("n", "0"), "", 3*o.unit())
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	n := 0
	busy := func(ctx context.Context) (bool, error) {
		n++
		err := s.Apply(ctx, id, session.Delta{Set: vals("n", strconv.Itoa(n)), Touched: time.Now()})
		switch {
		case errors.Is(err, session.ErrNotFound):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("Apply(Set n, Touched) = %w, want nil or ErrNotFound", err)
		}
		return loadProbe(s, id)(ctx)
	}
	return expectExpiry(ctx, o, "a session written to (Set, Touched, no Expires) until its Expires", d.Expires, busy)
}

// checkDeadlineDeltaExtends: a delta that only moves the deadlines keeps
// the session past its old Expires and until its new one.
func checkDeadlineDeltaExtends(ctx context.Context, s session.Store, o *Options) error {
	return checkExtends(ctx, s, o, "deadline-only Apply", func(ctx context.Context, id string, touched, expires time.Time) error {
		return s.Apply(ctx, id, session.Delta{Touched: touched, Expires: expires})
	})
}

// checkTouchExtends: Touch keeps the session past its old Expires and
// until its new one.
func checkTouchExtends(ctx context.Context, s session.Store, o *Options) error {
	t := s.(session.Toucher)
	return checkExtends(ctx, s, o, "Touch", t.Touch)
}

// errInconclusive marks an attempt whose timing premise the test machine
// did not keep (it ran a step too late to tell anything), as opposed to a
// store that broke the contract.
var errInconclusive = errors.New("inconclusive")

// checkExtends creates a session that would expire after 2 units, extends
// it after 1 unit to 4 units from then, checks it is alive after the first
// deadline and gone after the second. When the machine is too loaded to
// keep those steps apart, it tries again with units twice as long.
func checkExtends(ctx context.Context, s session.Store, o *Options, how string, extend func(ctx context.Context, id string, touched, expires time.Time) error) error {
	var errs []error
	for u := o.unit(); len(errs) < 3; u *= 2 {
		err := extendOnce(ctx, s, o, u, how, extend)
		if !errors.Is(err, errInconclusive) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("the test machine was too slow for this check three times (raise Options.ExpiryGranularity?): %w", errors.Join(errs...))
}

func extendOnce(ctx context.Context, s session.Store, o *Options, u time.Duration, how string, extend func(ctx context.Context, id string, touched, expires time.Time) error) error {
	id := session.NewID()
	d := expiring(vals("a", "1"), "alice", 2*u)
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	if err := waitUntil(ctx, d.Touched.Add(u)); err != nil {
		return err
	}
	touched := time.Now()
	expires := touched.Add(4 * u)
	err := extend(ctx, id, touched, expires)
	if end := time.Now(); err != nil {
		if errors.Is(err, session.ErrNotFound) && !end.Before(d.Expires.Add(-o.TimePrecision)) {
			return fmt.Errorf("%w: %s returned only %v after the old Expires", errInconclusive, how, end.Sub(d.Expires).Round(time.Millisecond))
		}
		return fmt.Errorf("%s %v before the old Expires = %w, want nil", how, d.Expires.Sub(end).Round(time.Millisecond), err)
	}
	// Past the old deadline and its allowed lateness, well before the new one.
	if err := waitUntil(ctx, d.Expires.Add(o.ExpiryGranularity+o.TimePrecision+o.pollEvery())); err != nil {
		return err
	}
	after := how + " moved Expires " + expires.Sub(d.Expires).Round(time.Millisecond).String() + " later and the old Expires passed"
	rec, err := s.Load(ctx, id)
	if end := time.Now(); errors.Is(err, session.ErrNotFound) && !end.Before(expires.Add(-o.TimePrecision)) {
		return fmt.Errorf("%w: the Load after the old Expires returned only %v after the new one", errInconclusive, end.Sub(expires).Round(time.Millisecond))
	}
	if err != nil {
		return fmt.Errorf("after %s: Load(%s) = %w, want the session", after, short(id), err)
	}
	if err := matchRecord(rec, o, id, after, want{
		Values: vals("a", "1"), Principal: "alice", Created: d.Created, Touched: touched, Expires: expires,
	}); err != nil {
		return err
	}
	return expectExpiry(ctx, o, "Load of a session extended by "+how, expires, loadProbe(s, id))
}

// checkExpiredIsAbsent: once expired, a session cannot be written, touched
// or revived without Create, and Create on its id starts an empty record:
// the dead session's attributes and principal never come back.
func checkExpiredIsAbsent(ctx context.Context, s session.Store, o *Options) error {
	// Two sessions expire together: one gets the writes that must be
	// refused, the other only a Create, so a store that cleans up on a
	// refused write cannot hide that Create would merge into the dead record.
	written, reborn := session.NewID(), session.NewID()
	d := expiring(vals("secret", "of the dead session"), "alice", o.unit())
	for _, id := range []string{written, reborn} {
		if err := s.Apply(ctx, id, d); err != nil {
			return fmt.Errorf("Apply(Create): %w", err)
		}
	}
	if err := expectExpiry(ctx, o, "Load of a session past its Expires", d.Expires, loadProbe(s, written)); err != nil {
		return err
	}
	if err := waitUntil(ctx, d.Expires.Add(o.ExpiryGranularity+o.TimePrecision)); err != nil {
		return err
	}
	now := time.Now()
	if err := wantApplyNotFound(ctx, s, written, session.Delta{Set: vals("late", "1"), Touched: now, Expires: now.Add(time.Hour)}, "an expired session"); err != nil {
		return err
	}
	if t, ok := o.toucher(s); ok {
		if err := t.Touch(ctx, written, now, now.Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
			return fmt.Errorf("Touch of an expired session = %v, want an error wrapping ErrNotFound", err)
		}
	}
	if err := wantNotFound(ctx, s, written, "a refused Apply and Touch to an expired session"); err != nil {
		return err
	}
	c := newSession(vals("fresh", "1"), "")
	if err := s.Apply(ctx, reborn, c); err != nil {
		return fmt.Errorf("Apply(Create) on the id of an expired session = %w, want nil", err)
	}
	return wantRecord(ctx, s, o, reborn, "Apply(Create, Set fresh) on the id of an expired session of alice", want{
		Values: vals("fresh", "1"), Principal: "", Created: c.Created, Expires: c.Expires,
	})
}

// checkIndexAfterExpiry: FindByPrincipal leaves out expired sessions and
// DeleteByPrincipal does not count them.
func checkIndexAfterExpiry(ctx context.Context, s session.Store, o *Options) error {
	idx := s.(session.PrincipalIndex)
	dying := session.NewID()
	d := expiring(vals("a", "1"), "alice", o.unit())
	if err := s.Apply(ctx, dying, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	long, err := create(ctx, s, vals("a", "2"), "alice")
	if err != nil {
		return err
	}
	inIndex := func(ctx context.Context) (bool, error) {
		ids, err := find(ctx, idx, "alice")
		return slices.Contains(ids, dying), err
	}
	if err := expectExpiry(ctx, o, "FindByPrincipal of an expired session", d.Expires, inIndex); err != nil {
		return err
	}
	// Past any lateness the store may have, as much for counting as finding.
	if err := waitUntil(ctx, d.Expires.Add(o.ExpiryGranularity+o.TimePrecision)); err != nil {
		return err
	}
	if err := wantFind(ctx, idx, "alice", "one of alice's two sessions expired", long); err != nil {
		return err
	}
	if n, err := idx.DeleteByPrincipal(ctx, "alice"); err != nil || n != 1 {
		return fmt.Errorf("DeleteByPrincipal(alice) with one live and one expired session = %d, %v, want 1, nil", n, err)
	}
	return wantNotFound(ctx, s, long, "DeleteByPrincipal(alice)")
}

// checkListerAfterExpiry: Count and Range leave out expired sessions.
func checkListerAfterExpiry(ctx context.Context, s session.Store, o *Options) error {
	l := s.(session.Lister)
	dying := session.NewID()
	d := expiring(vals("a", "1"), "", o.unit())
	if err := s.Apply(ctx, dying, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	long, err := create(ctx, s, vals("a", "2"), "")
	if err != nil {
		return err
	}
	inRange := func(ctx context.Context) (bool, error) {
		got, err := rangeIDs(ctx, l)
		_, ok := got[dying]
		return ok, err
	}
	if err := expectExpiry(ctx, o, "Range of an expired session", d.Expires, inRange); err != nil {
		return err
	}
	if err := waitUntil(ctx, d.Expires.Add(o.ExpiryGranularity+o.TimePrecision)); err != nil {
		return err
	}
	got, err := rangeIDs(ctx, l)
	if err != nil {
		return err
	}
	if _, ok := got[long]; !ok || len(got) != 1 {
		return fmt.Errorf("Range with one live and one expired session visited %d sessions (the live one: %v), want only the live one", len(got), ok)
	}
	if n, err := l.Count(ctx); err != nil || n != 1 {
		return fmt.Errorf("Count with one live and one expired session = %d, %v, want 1, nil", n, err)
	}
	return nil
}
