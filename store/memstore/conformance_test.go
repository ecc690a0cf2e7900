package memstore_test

import (
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
	"github.com/roamsession/roam/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) session.Store {
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestConformanceWithBusySweeper runs the suite while the sweeper runs every
// few milliseconds, so the race detector sees it interleave with every
// operation, and expired sessions are really freed during the expiry checks.
func TestConformanceWithBusySweeper(t *testing.T) {
	storetest.Run(t, func(t *testing.T) session.Store {
		s := memstore.New(memstore.Options{SweepInterval: 2 * time.Millisecond})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
