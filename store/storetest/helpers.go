package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/roamsession/roam/session"
)

// short abbreviates a session id for messages: enough to tell ids apart.
func short(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

// q quotes a value for a message, cutting long ones.
func q(b []byte) string {
	const keep = 32
	if len(b) > keep {
		return fmt.Sprintf("%q… (%d bytes)", b[:keep], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// vals builds a Values map from key, value pairs of strings.
func vals(kv ...string) map[string][]byte {
	m := make(map[string][]byte, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

// cloneVals deep-copies a Values map, so a check keeps its own expectation
// even when a broken store holds on to the map it was given.
func cloneVals(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

// newSession returns a delta that creates a session the way the Manager
// does: with creation time, activity time, an hour to live and, when
// principal is not "", its user.
func newSession(values map[string][]byte, principal string) session.Delta {
	now := time.Now()
	return session.Delta{
		Create:       true,
		Set:          values,
		SetPrincipal: principal != "",
		Principal:    principal,
		Created:      now,
		Touched:      now,
		Expires:      now.Add(time.Hour),
	}
}

// create applies newSession to a fresh id and returns the id.
func create(ctx context.Context, s session.Store, values map[string][]byte, principal string) (string, error) {
	id := session.NewID()
	if err := s.Apply(ctx, id, newSession(values, principal)); err != nil {
		return "", fmt.Errorf("Apply(%s, Create) of a new session: %w", short(id), err)
	}
	return id, nil
}

// load returns the record of id, or an error saying what was being done.
func load(ctx context.Context, s session.Store, id, after string) (*session.Record, error) {
	rec, err := s.Load(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("after %s: Load(%s) = %w, want the session", after, short(id), err)
	}
	if rec == nil {
		return nil, fmt.Errorf("after %s: Load(%s) returned a nil record and no error", after, short(id))
	}
	return rec, nil
}

// wantNotFound checks that Load reports id as absent with ErrNotFound.
func wantNotFound(ctx context.Context, s session.Store, id, after string) error {
	rec, err := s.Load(ctx, id)
	switch {
	case err == nil:
		return fmt.Errorf("after %s: Load(%s) returned a session (values %s), want ErrNotFound", after, short(id), describe(rec))
	case !errors.Is(err, session.ErrNotFound):
		return fmt.Errorf("after %s: Load(%s) = %v, want an error wrapping ErrNotFound", after, short(id), err)
	case rec != nil:
		return fmt.Errorf("after %s: Load(%s) returned ErrNotFound together with a non-nil record", after, short(id))
	}
	return nil
}

// wantApplyNotFound checks that Apply of d to id fails with ErrNotFound.
func wantApplyNotFound(ctx context.Context, s session.Store, id string, d session.Delta, what string) error {
	err := s.Apply(ctx, id, d)
	if err == nil {
		return fmt.Errorf("Apply without Create to %s: returned nil, want ErrNotFound", what)
	}
	if !errors.Is(err, session.ErrNotFound) {
		return fmt.Errorf("Apply without Create to %s: returned %v, want an error wrapping ErrNotFound", what, err)
	}
	return nil
}

// describe prints a record's values for a message.
func describe(rec *session.Record) string {
	if rec == nil {
		return "<nil record>"
	}
	keys := slices.Sorted(maps.Keys(rec.Values))
	parts := make([]string, 0, min(len(keys), 6))
	for i, k := range keys {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… %d more", len(keys)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%q=%s", k, q(rec.Values[k])))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// diffValues reports how got differs from want, naming at most a few keys.
func diffValues(got, want map[string][]byte) error {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("key %q missing, want %s", k, q(want[k])))
		case string(g) != string(want[k]):
			diffs = append(diffs, fmt.Sprintf("key %q = %s, want %s", k, q(g), q(want[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected key %q = %s", k, q(got[k])))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more differences", len(diffs)-5))
	}
	return errors.New(strings.Join(diffs, "; "))
}

// want is what a check expects a loaded record to hold. Zero times and a
// nil Values are not checked; Principal is always checked.
type want struct {
	Values    map[string][]byte
	Principal string
	Created   time.Time
	Touched   time.Time
	Expires   time.Time
}

// wantRecord loads id and compares it with w.
func wantRecord(ctx context.Context, s session.Store, o *Options, id, after string, w want) error {
	rec, err := load(ctx, s, id, after)
	if err != nil {
		return err
	}
	return matchRecord(rec, o, id, after, w)
}

// matchRecord compares a record with w and names every field that differs.
func matchRecord(rec *session.Record, o *Options, id, after string, w want) error {
	var errs []error
	if rec.ID != id {
		errs = append(errs, fmt.Errorf("ID = %q, want %q", rec.ID, id))
	}
	if w.Values != nil {
		if err := diffValues(rec.Values, w.Values); err != nil {
			errs = append(errs, fmt.Errorf("Values: %w", err))
		}
	}
	if rec.Principal != w.Principal {
		errs = append(errs, fmt.Errorf("Principal = %q, want %q", rec.Principal, w.Principal))
	}
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{{"Created", rec.Created, w.Created}, {"Touched", rec.Touched, w.Touched}, {"Expires", rec.Expires, w.Expires}} {
		if !f.want.IsZero() && !near(f.got, f.want, o.TimePrecision) {
			errs = append(errs, fmt.Errorf("%s = %v, want %v (±%v)", f.name, f.got, f.want, o.TimePrecision))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("after %s: Load(%s): %w", after, short(id), errors.Join(errs...))
}

// near reports whether a and b are less than prec apart.
func near(a, b time.Time, prec time.Duration) bool {
	d := a.Sub(b)
	return d > -prec && d < prec
}

// parallel runs fn for w in [0, n) on n goroutines and joins their errors.
func parallel(n int, fn func(w int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() { errs[w] = fn(w) })
	}
	wg.Wait()
	return errors.Join(firstErrors(errs, 4)...)
}

// firstErrors returns at most n of the non-nil errors, and a note of how
// many were left out, so one broken store does not print a thousand lines.
func firstErrors(errs []error, n int) []error {
	var out []error
	dropped := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		if len(out) < n {
			out = append(out, err)
		} else {
			dropped++
		}
	}
	if dropped > 0 {
		out = append(out, fmt.Errorf("and %d more errors like these", dropped))
	}
	return out
}

// errList collects errors from several goroutines, keeping the first few.
type errList struct {
	mu   sync.Mutex
	errs []error
	more int
}

func (l *errList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 4 {
		l.errs = append(l.errs, err)
	} else {
		l.more++
	}
}

func (l *errList) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	errs := l.errs
	if l.more > 0 {
		errs = append(slices.Clip(errs), fmt.Errorf("and %d more errors like these", l.more))
	}
	return errors.Join(errs...)
}

// waitUntil blocks until the wall clock passes at, or ctx ends. The expiry
// checks use it to wait for a deadline the contract defines, not to hope
// that something has happened meanwhile.
func waitUntil(ctx context.Context, at time.Time) error {
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting until %v: %w", at.Format("15:04:05.000"), ctx.Err())
	}
}
