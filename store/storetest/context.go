package storetest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roamsession/roam/session"
)

// checkCancelledContext: every method called with a context that is
// already done returns an error wrapping ctx.Err() and changes nothing.
// (What a context ending mid-call does is the store's business; see the
// package doc.)
func checkCancelledContext(ctx context.Context, s session.Store, o *Options) error {
	d := newSession(vals("a", "1"), "alice")
	id := session.NewID()
	if err := s.Apply(ctx, id, d); err != nil {
		return fmt.Errorf("Apply(Create): %w", err)
	}
	unchanged := want{Values: vals("a", "1"), Principal: "alice", Touched: d.Touched, Expires: d.Expires}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()

	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"a cancelled context", cancelled, context.Canceled}, {"a context past its deadline", expired, context.DeadlineExceeded}} {
		wantErr := func(method string, err error) error {
			if err == nil {
				return fmt.Errorf("%s with %s returned nil, want an error wrapping %v", method, c.name, c.want)
			}
			if !errors.Is(err, c.want) {
				return fmt.Errorf("%s with %s returned %v, want an error wrapping %v", method, c.name, err, c.want)
			}
			return nil
		}
		if rec, err := s.Load(c.ctx, id); err == nil {
			return fmt.Errorf("Load with %s returned the session %s, want an error wrapping %v", c.name, describe(rec), c.want)
		} else if err := wantErr("Load", err); err != nil {
			return err
		}
		fresh := session.NewID()
		if err := wantErr("Apply(Create)", s.Apply(c.ctx, fresh, newSession(vals("a", "1"), ""))); err != nil {
			return err
		}
		if err := wantNotFound(ctx, s, fresh, "Apply(Create) with "+c.name); err != nil {
			return err
		}
		later := time.Now().Add(2 * time.Hour)
		if err := wantErr("Apply", s.Apply(c.ctx, id, session.Delta{Set: vals("a", "changed", "b", "2"), Del: []string{"a"}, SetPrincipal: true, Principal: "bob", Expires: later})); err != nil {
			return err
		}
		if err := wantErr("Delete", s.Delete(c.ctx, id)); err != nil {
			return err
		}
		if t, ok := o.toucher(s); ok {
			if err := wantErr("Touch", t.Touch(c.ctx, id, later, later)); err != nil {
				return err
			}
		}
		if idx, ok := o.index(s); ok {
			if _, err := idx.FindByPrincipal(c.ctx, "alice"); err == nil || !errors.Is(err, c.want) {
				return wantErr("FindByPrincipal", err)
			}
			if _, err := idx.DeleteByPrincipal(c.ctx, "alice"); err == nil || !errors.Is(err, c.want) {
				return wantErr("DeleteByPrincipal", err)
			}
		}
		if l, ok := o.lister(s); ok {
			if _, err := l.Count(c.ctx); err == nil || !errors.Is(err, c.want) {
				return wantErr("Count", err)
			}
			calls := 0
			if err := wantErr("Range", l.Range(c.ctx, func(*session.Record) bool { calls++; return true })); err != nil {
				return err
			}
			if calls != 0 {
				return fmt.Errorf("Range with %s called fn %d times, want 0", c.name, calls)
			}
		}
		if err := wantRecord(ctx, s, o, id, "Apply, Delete, Touch and DeleteByPrincipal with "+c.name+" (nothing may change)", unchanged); err != nil {
			return err
		}
	}
	return nil
}
