// Package storetest is the conformance suite every session.Store in roam,
// and any store a user writes, must pass against its real backend.
//
// A store's own test calls Run with a function that returns a fresh store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) session.Store {
//			s := mystore.New(mystore.Options{Prefix: uniquePrefix(t)})
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every behaviour is its own subtest, so a failure names the behaviour and
// its message says what was expected and what came back. The optional
// interfaces (session.Toucher, session.PrincipalIndex, session.Lister) are
// found by type assertion; their checks run only when the store implements
// them and Options does not skip them.
//
// Besides the letter of the session.Store doc comments, the suite holds
// stores to these readings of it, which the Manager relies on:
//
//   - An expired session is an absent one for every method, not only Load:
//     Apply without Create and Touch return session.ErrNotFound for it (so
//     a late request cannot revive a session past its idle timeout),
//     FindByPrincipal, Count and Range leave it out, DeleteByPrincipal does
//     not count it, and Apply with Create on its id starts an empty record
//     (the dead session's attributes never reappear).
//   - A session with no attributes left still exists until it is deleted or
//     expires.
//   - Apply with Create on a live session applies the delta to it like a
//     plain Apply; it does not replace the record.
//   - The anonymous principal "" is never indexed: FindByPrincipal("")
//     returns nothing and DeleteByPrincipal("") destroys nothing, so a bug
//     that passes an empty user cannot log out every anonymous visitor.
//   - Range's fn may call the store (Load, Delete) without deadlocking.
//   - Context: a store may not block at all (memstore) or may block on the
//     network, but every method called with a context that is already done
//     returns an error wrapping ctx.Err() and changes nothing. A store that
//     checks ctx.Err() on entry and passes ctx to its driver meets this.
//     What happens when a context ends while a call is in flight is left to
//     the store (the write may or may not have reached the backend); the
//     suite does not test it, because it cannot be tested without racing.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
)

// Options tunes the suite to what a backend can promise. The zero value
// suits a store with millisecond (or finer) deadlines and times.
type Options struct {
	// ExpiryGranularity is how late the store may be in noticing that a
	// session's Expires has passed: time.Second for a backend whose TTLs are
	// whole seconds. The suite gives short-lived sessions lifetimes of a few
	// times this (at least 100 ms), and fails a store that still returns a
	// session more than ExpiryGranularity+TimePrecision after its Expires,
	// or that drops it before Expires. Zero means no lateness is allowed.
	ExpiryGranularity time.Duration

	// TimePrecision is how far a loaded Created, Touched or Expires may be
	// from the time that was saved, for backends that round times (unix
	// milliseconds, SQL microseconds). Zero means 1 ms.
	TimePrecision time.Duration

	// Sessions is how many sessions the ManySessions check creates, loads
	// and deletes from parallel goroutines. Zero means 3000.
	Sessions int

	// Timeout bounds each check. A check that has not returned by then
	// fails the test (a store that deadlocks is reported, not waited on
	// forever). Zero means 30 s.
	Timeout time.Duration

	// SkipToucher, SkipPrincipalIndex and SkipLister skip the checks of an
	// optional interface the store's type has but does not really support
	// (for example a wrapper whose methods return session.ErrNotSupported).
	SkipToucher        bool
	SkipPrincipalIndex bool
	SkipLister         bool
}

// withDefaults returns o with its zero fields filled in.
func (o Options) withDefaults() Options {
	if o.ExpiryGranularity < 0 {
		o.ExpiryGranularity = 0
	}
	if o.TimePrecision <= 0 {
		o.TimePrecision = time.Millisecond
	}
	if o.Sessions <= 0 {
		o.Sessions = 3000
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return o
}

// unit is the time step of the expiry checks: long enough that a backend
// with coarse deadlines and a loaded test machine can keep to it, short
// enough that the suite stays fast for precise stores.
func (o *Options) unit() time.Duration {
	return max(o.ExpiryGranularity, 100*time.Millisecond)
}

// pollEvery is how often the expiry checks probe a session.
func (o *Options) pollEvery() time.Duration {
	return max(o.unit()/20, 5*time.Millisecond)
}

// capability names the optional interfaces a check needs.
type capability uint8

const (
	needToucher capability = 1 << iota
	needIndex
	needLister
)

// check is one behaviour of the suite. Checks are plain functions that
// return an error, not functions of *testing.T, so that the suite's own tests
// can run one against a deliberately broken store and see it fail.
type check struct {
	name  string
	needs capability
	// timed checks spend most of their time waiting for deadlines, so they
	// run in parallel with each other (each on its own store).
	timed bool
	fn    func(ctx context.Context, s session.Store, o *Options) error
}

// allChecks lists the suite in the order it runs.
func allChecks() []check {
	return []check{
		{name: "LoadSaveDelete", fn: checkLoadSaveDelete},
		{name: "NotFound", fn: checkNotFound},
		{name: "DeltaSet", fn: checkDeltaSet},
		{name: "DeltaDel", fn: checkDeltaDel},
		{name: "DeltaSetAndDel", fn: checkDeltaSetAndDel},
		{name: "DeltaPrincipal", fn: checkDeltaPrincipal},
		{name: "DeltaDeadlines", fn: checkDeltaDeadlines},
		{name: "CreateOnLiveSessionMerges", fn: checkCreateOnLive},
		{name: "ApplyWithoutCreate", fn: checkApplyWithoutCreate},
		{name: "Renew", fn: checkRenew},
		{name: "LargeValues", fn: checkLargeValues},
		{name: "BinaryValues", fn: checkBinaryValues},
		{name: "UnicodeKeys", fn: checkUnicodeKeys},
		{name: "RecordsAreCopies", fn: checkRecordsAreCopies},
		{name: "ConcurrentKeys", fn: checkConcurrentKeys},
		{name: "ConcurrentOneKey", fn: checkConcurrentOneKey},
		{name: "DeltaIsAtomic", fn: checkDeltaIsAtomic},
		{name: "DeleteIsFinal", fn: checkDeleteIsFinal},
		{name: "ManySessions", fn: checkManySessions},
		{name: "CancelledContext", fn: checkCancelledContext},
		{name: "Touch", needs: needToucher, fn: checkTouch},
		{name: "PrincipalIndex", needs: needIndex, fn: checkPrincipalIndex},
		{name: "PrincipalChange", needs: needIndex, fn: checkPrincipalChange},
		{name: "ListerCountRange", needs: needLister, fn: checkLister},
		{name: "RangeMayCallStore", needs: needLister, fn: checkRangeMayCallStore},

		{name: "IdleExpiry", timed: true, fn: checkIdleExpiry},
		{name: "ActivityDoesNotExtendExpires", timed: true, fn: checkAbsoluteExpiry},
		{name: "DeadlineOnlyDeltaExtends", timed: true, fn: checkDeadlineDeltaExtends},
		{name: "TouchExtends", timed: true, needs: needToucher, fn: checkTouchExtends},
		{name: "ExpiredIsAbsent", timed: true, fn: checkExpiredIsAbsent},
		{name: "PrincipalIndexAfterExpiry", timed: true, needs: needIndex, fn: checkIndexAfterExpiry},
		{name: "ListerAfterExpiry", timed: true, needs: needLister, fn: checkListerAfterExpiry},
	}
}

// Run runs the conformance suite with the zero Options; see RunWith.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	RunWith(t, newStore, Options{})
}

// RunWith runs the conformance suite: one subtest per behaviour, the
// expiry checks grouped under "Expiry".
//
// newStore is called once per subtest with that subtest's t. It must return
// an empty store that shares no sessions with any other store it returned
// (a fresh key prefix, database or table per call), and should register the
// store's cleanup with t.Cleanup. It may call t.Skip or t.Fatal. The expiry
// subtests run in parallel, so newStore must be safe to call concurrently.
func RunWith(t *testing.T, newStore func(t *testing.T) session.Store, opts Options) {
	t.Helper()
	o := opts.withDefaults()
	var timed []check
	for _, c := range allChecks() {
		if c.timed {
			timed = append(timed, c)
			continue
		}
		t.Run(c.name, func(t *testing.T) { runCheck(t, c, newStore, &o) })
	}
	t.Run("Expiry", func(t *testing.T) {
		for _, c := range timed {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				runCheck(t, c, newStore, &o)
			})
		}
	})
}

// runCheck runs c on a fresh store and reports its error on t.
func runCheck(t *testing.T, c check, newStore func(t *testing.T) session.Store, o *Options) {
	t.Helper()
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned a nil store")
	}
	if reason := o.missing(c.needs, s); reason != "" {
		t.Skip(reason)
	}
	if err := callCheck(t.Context(), c, s, o); err != nil {
		t.Error(err)
	}
}

// callCheck runs c.fn under o.Timeout. The check runs on its own goroutine so
// that a store that blocks forever (a deadlock, a context it ignores) fails
// the check at the timeout instead of hanging the test binary.
func callCheck(ctx context.Context, c check, s session.Store, o *Options) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.fn(ctx, s, o) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Give a check that honours ctx a moment to say what it was waiting on.
		select {
		case err := <-done:
			return err
		case <-time.After(time.Second):
			return fmt.Errorf("%s did not return within %v: the store blocks and ignores its context (deadlock?)", c.name, o.Timeout)
		}
	}
}

// missing returns why s cannot run a check that needs caps, or "".
func (o *Options) missing(caps capability, s session.Store) string {
	if caps&needToucher != 0 {
		if _, ok := s.(session.Toucher); !ok {
			return fmt.Sprintf("%T does not implement session.Toucher", s)
		}
		if o.SkipToucher {
			return "Options.SkipToucher is set"
		}
	}
	if caps&needIndex != 0 {
		if _, ok := s.(session.PrincipalIndex); !ok {
			return fmt.Sprintf("%T does not implement session.PrincipalIndex", s)
		}
		if o.SkipPrincipalIndex {
			return "Options.SkipPrincipalIndex is set"
		}
	}
	if caps&needLister != 0 {
		if _, ok := s.(session.Lister); !ok {
			return fmt.Sprintf("%T does not implement session.Lister", s)
		}
		if o.SkipLister {
			return "Options.SkipLister is set"
		}
	}
	return ""
}

// toucher, index and lister return s's optional interface when the suite
// may use it, so checks of the core interface can also verify what they did
// through it (for example that a refused Apply left nothing in the index).
func (o *Options) toucher(s session.Store) (session.Toucher, bool) {
	if o.missing(needToucher, s) != "" {
		return nil, false
	}
	return s.(session.Toucher), true
}

func (o *Options) index(s session.Store) (session.PrincipalIndex, bool) {
	if o.missing(needIndex, s) != "" {
		return nil, false
	}
	return s.(session.PrincipalIndex), true
}

func (o *Options) lister(s session.Store) (session.Lister, bool) {
	if o.missing(needLister, s) != "" {
		return nil, false
	}
	return s.(session.Lister), true
}
