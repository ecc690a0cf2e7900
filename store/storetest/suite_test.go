package storetest_test

import (
	"testing"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestMemstorePassesTheSuite runs the suite against a correct store from
// outside the package, as every store's own test does.
func TestMemstorePassesTheSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) session.Store {
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
