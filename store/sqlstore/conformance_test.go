package sqlstore_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/sqlstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestConformance runs the store suite on each real database: one database
// per backend, a table prefix per check. The cleanup loop runs every few
// milliseconds so that the race detector sees it interleave with every
// operation and expired rows really disappear during the expiry checks.
func TestConformance(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			// The backends share nothing, and mostly wait on round trips
			// and deadlines: running them side by side halves the wall time.
			t.Parallel()
			conformance(t, be, openDB(t, be))
		})
	}
}

func conformance(t *testing.T, be backend, db *sql.DB) {
	var o storetest.Options
	if be.dialect == sqlstore.SQLite && raceEnabled {
		// The race detector makes the pure-Go SQLite about ten times
		// slower; the default 3000 sessions would need minutes.
		o.Sessions = 500
	}
	storetest.RunWith(t, func(t *testing.T) session.Store {
		return newStore(t, db, sqlstore.Options{CleanupInterval: 20 * time.Millisecond})
	}, o)
}
