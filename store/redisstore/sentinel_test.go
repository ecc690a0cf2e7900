package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestSentinel starts a master, a replica and three sentinels (down-after
// 1 s), runs the suite through go-redis's failover client, then kills the
// master once and checks what a failover keeps.
func TestSentinel(t *testing.T) {
	sn := testserver.RedisSentinel(t, testserver.SentinelOptions{DownAfter: time.Second})
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    sn.MasterName,
		SentinelAddrs: sn.SentinelAddrs,
		DialTimeout:   300 * time.Millisecond,
		ReadTimeout:   500 * time.Millisecond,
		WriteTimeout:  500 * time.Millisecond,
		DialerRetries: 1,
	})
	t.Cleanup(func() { client.Close() })

	t.Run("Conformance", func(t *testing.T) {
		storetest.RunWith(t, func(t *testing.T) session.Store {
			return newStore(t, client, redisstore.Options{})
		}, storetest.Options{Sessions: 500})
	})
	t.Run("Failover", func(t *testing.T) {
		testSentinelFailover(t, sn, client)
	})
}

// testSentinelFailover writes sessions with WaitReplicas 1, then keeps
// writing new sessions without it while the master is killed. After the
// sentinels promote the replica, every session written with WAIT must be
// there; of the asynchronous ones, those acknowledged in the moments before
// the crash may be lost, and the test reports how many were. It also
// measures how long after the kill a write succeeds again.
func testSentinelFailover(t *testing.T, sn *testserver.Sentinel, client *redis.Client) {
	ctx := t.Context()
	waitReplicaOnline(t, client, 1)
	prefix := uniquePrefix()
	durable := newStore(t, client, redisstore.Options{Prefix: prefix, WaitReplicas: 1, WaitTimeout: 400 * time.Millisecond})
	async := newStore(t, client, redisstore.Options{Prefix: prefix})

	create := func(ctx context.Context, s *redisstore.Store, i int) (string, error) {
		id := session.NewID()
		now := time.Now()
		return id, s.Apply(ctx, id, session.Delta{
			Create: true, Set: map[string][]byte{"i": []byte(strconv.Itoa(i))},
			SetPrincipal: true, Principal: "user" + strconv.Itoa(i%10),
			Created: now, Touched: now, Expires: now.Add(time.Hour),
		})
	}
	var durableIDs []string
	for i := range 200 {
		id, err := create(ctx, durable, i)
		if err != nil {
			t.Fatalf("Apply(Create) %d with WaitReplicas 1 before the crash: %v", i, err)
		}
		durableIDs = append(durableIDs, id)
	}

	// Writers keep creating sessions without WAIT through the crash.
	var (
		mu        sync.Mutex
		acked     []string
		killedAt  time.Time
		resumedAt time.Time
		failed    int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const writers, maxWrites = 4, 20000
	for w := range writers {
		wg.Go(func() {
			for i := range maxWrites / writers {
				select {
				case <-stop:
					return
				default:
				}
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				start := time.Now()
				id, err := create(wctx, async, w*maxWrites+i)
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, id)
					// Only a write begun after the kill proves a master
					// is back; one begun before may have finished on the
					// old master just before it died.
					if !killedAt.IsZero() && start.After(killedAt) && resumedAt.IsZero() {
						resumedAt = time.Now()
					}
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriters)

	waitFor(t, 10*time.Second, "async writers to get going", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	old := sn.KillMaster()
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	waitFor(t, 30*time.Second, "a write to succeed after the master was killed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !resumedAt.IsZero()
	})
	newMaster := sn.WaitFailover(old)
	stopWriters()
	mu.Lock()
	resumed := resumedAt.Sub(killedAt)
	ackedNow := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("writes resumed %v after killing master %s (new master %s, down-after %v)", resumed.Round(10*time.Millisecond), old, newMaster, sn.DownAfter)
	if limit := sn.DownAfter + 10*time.Second; resumed > limit {
		t.Errorf("writes resumed %v after the master was killed, want within %v", resumed, limit)
	}

	for i, id := range durableIDs {
		if _, err := durable.Load(ctx, id); err != nil {
			t.Errorf("session %d written with WaitReplicas 1 before the crash: Load after failover = %v, want it kept", i, err)
		}
	}
	lost := 0
	for _, id := range ackedNow {
		_, err := async.Load(ctx, id)
		switch {
		case errors.Is(err, session.ErrNotFound):
			lost++
		case err != nil:
			t.Fatalf("Load after failover: %v", err)
		}
	}
	t.Logf("without WaitReplicas: %d of %d acknowledged writes lost in the failover (%d writes failed while no master was reachable); with WaitReplicas 1: 0 of %d lost",
		lost, len(ackedNow), failed, len(durableIDs))
}

// waitFor polls cond every 10 ms until it holds, failing t after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
