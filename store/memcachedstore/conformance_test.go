package memcachedstore_test

import (
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestConformance runs the suite against three real memcached servers, the
// sessions spread over them by the rendezvous selector.
//
// It runs with the suite's zero Options, i.e. no expiry lateness allowed,
// although memcached's TTLs are whole seconds: Load enforces the record's
// own Expires, so a session ends on time whatever the item's TTL does.
func TestConformance(t *testing.T) {
	servers := testserver.MemcachedN(t, 3)
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr
	}
	storetest.Run(t, func(t *testing.T) session.Store {
		return onServers(t, addrs, memcachedstore.ClientOptions{Timeout: time.Second}, memcachedstore.Options{}).store
	})
}
