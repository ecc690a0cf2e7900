package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
)

// TestReferenceStorePassesTheSuite runs the suite against refStore without
// a flaw: the suite's checks hold for a second, independent correct store
// (memstore is the first, in suite_test.go), so a check failing below is
// the flaw's doing, not the check's.
func TestReferenceStorePassesTheSuite(t *testing.T) {
	Run(t, func(t *testing.T) session.Store { return newRef("") })
}

// TestSuiteCatchesBrokenStores runs each check against a store broken in
// the way that check exists to catch, and requires it to fail.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	cases := []struct{ flaw, check string }{
		{"ignoresDel", "DeltaDel"},
		{"ignoresDel", "DeltaSetAndDel"},
		{"dropsEmptySession", "DeltaDel"},
		{"wholeRecord", "ConcurrentKeys"},
		{"tornValues", "ConcurrentOneKey"},
		{"perKeyWrites", "DeltaIsAtomic"},
		{"resurrects", "ApplyWithoutCreate"},
		{"resurrects", "DeleteIsFinal"},
		{"resurrects", "Renew"},
		{"sharedMaps", "RecordsAreCopies"},
		{"truncatesAtNUL", "BinaryValues"},
		{"ignoresContext", "CancelledContext"},
		{"staleIndex", "PrincipalChange"},
		{"indexesAnonymous", "PrincipalIndex"},
		{"rangeIgnoresStop", "ListerCountRange"},
		{"holdsLockInRange", "RangeMayCallStore"},
		{"ignoresExpires", "IdleExpiry"},
		{"ignoresExpires", "ExpiredIsAbsent"},
		{"expiresEarly", "IdleExpiry"},
		{"refreshesTTLOnWrite", "ActivityDoesNotExtendExpires"},
		{"createMergesExpired", "ExpiredIsAbsent"},
		{"indexKeepsExpired", "PrincipalIndexAfterExpiry"},
		{"countsExpired", "ListerAfterExpiry"},
	}
	byName := map[string]check{}
	for _, c := range allChecks() {
		byName[c.name] = c
	}
	for _, tc := range cases {
		c, ok := byName[tc.check]
		if !ok {
			t.Fatalf("no check named %q", tc.check)
		}
		t.Run(tc.flaw+"/"+tc.check, func(t *testing.T) {
			t.Parallel()
			// A short timeout: the deadlocking store is caught by it.
			o := Options{Timeout: 2 * time.Second}.withDefaults()
			err := callCheck(t.Context(), c, newRef(tc.flaw), &o)
			if err == nil {
				t.Fatalf("check %s passed a store that %s, want it to fail", tc.check, tc.flaw)
			}
			t.Logf("as wanted, %s failed: %v", tc.check, err)
		})
	}
}

// bareStore has only the methods of session.Store.
type bareStore struct{ session.Store }

func TestOptionalChecksRunOnlyWhenImplementedAndNotSkipped(t *testing.T) {
	full := newRef("")
	o := Options{}.withDefaults()
	for _, caps := range []capability{needToucher, needIndex, needLister} {
		if r := o.missing(caps, full); r != "" {
			t.Errorf("missing(%d) for a store with every interface = %q, want \"\"", caps, r)
		}
		if r := o.missing(caps, bareStore{full}); r == "" {
			t.Errorf("missing(%d) for a store with only session.Store = \"\", want a reason to skip", caps)
		}
	}
	skip := Options{SkipToucher: true, SkipPrincipalIndex: true, SkipLister: true}.withDefaults()
	for _, caps := range []capability{needToucher, needIndex, needLister} {
		if r := skip.missing(caps, full); r == "" {
			t.Errorf("missing(%d) with its Skip option set = \"\", want a reason to skip", caps)
		}
	}
	// The core checks run on a bare store and pass.
	for _, c := range allChecks() {
		if c.needs != 0 || c.timed {
			continue
		}
		if err := callCheck(context.Background(), c, bareStore{newRef("")}, &o); err != nil {
			t.Errorf("%s on a store with only session.Store: %v", c.name, err)
		}
	}
}

func TestExpiryGranularityStretchesTheUnit(t *testing.T) {
	o := Options{ExpiryGranularity: time.Second}.withDefaults()
	if u := o.unit(); u != time.Second {
		t.Errorf("unit with 1 s granularity = %v, want 1s", u)
	}
	o = Options{}.withDefaults()
	if u := o.unit(); u != 100*time.Millisecond {
		t.Errorf("unit with no granularity = %v, want 100ms", u)
	}
	if o.TimePrecision != time.Millisecond || o.Sessions != 3000 || o.Timeout != 30*time.Second {
		t.Errorf("defaults = precision %v, sessions %d, timeout %v; want 1ms, 3000, 30s", o.TimePrecision, o.Sessions, o.Timeout)
	}
}
