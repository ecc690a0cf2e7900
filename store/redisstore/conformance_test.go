package redisstore_test

import (
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestConformance runs the suite against one standalone redis-server, each
// check with a prefix of its own.
func TestConformance(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	storetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, client, redisstore.Options{})
	})
}

// TestConformanceWaitingForReplica runs the suite with WaitReplicas on a
// master with one replica: every write also waits for the replica.
func TestConformanceWaitingForReplica(t *testing.T) {
	master := testserver.Redis(t)
	testserver.Redis(t, testserver.RedisOptions{ReplicaOf: master})
	client := standaloneClient(t, master.Addr)
	waitReplicaOnline(t, client, 1)
	storetest.RunWith(t, func(t *testing.T) session.Store {
		return newStore(t, client, redisstore.Options{WaitReplicas: 1, WaitTimeout: 400 * time.Millisecond})
	}, storetest.Options{Sessions: 500})
}
