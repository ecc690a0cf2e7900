package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
	"github.com/roamsession/roam/store/storetest"
)

// TestCluster starts one Redis Cluster of three masters with a replica each
// (a few seconds) and runs every cluster test on it; the failover test
// kills a master, so it runs last.
func TestCluster(t *testing.T) {
	c := testserver.RedisCluster(t, testserver.ClusterOptions{Replicas: true})
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        c.Addrs[:3],
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
	})
	t.Cleanup(func() { client.Close() })

	t.Run("Conformance", func(t *testing.T) {
		storetest.RunWith(t, func(t *testing.T) session.Store {
			return newStore(t, client, redisstore.Options{})
		}, storetest.Options{Sessions: 1000})
	})
	t.Run("IndexAndSessionOnDifferentMasters", func(t *testing.T) {
		testIndexOnOtherMaster(t, client)
	})
	t.Run("WaitReplicas", func(t *testing.T) {
		testClusterWait(t, client)
	})
	t.Run("FailoverResumesWrites", func(t *testing.T) {
		testClusterFailover(t, c, client)
	})
}

// testIndexOnOtherMaster: a principal whose index lives on another master
// than its sessions still finds and destroys exactly them, and a session
// that moved to another principal is not returned even though nothing
// removes it from the old index atomically.
func testIndexOnOtherMaster(t *testing.T, client *redis.ClusterClient) {
	ctx := t.Context()
	prefix := uniquePrefix()
	s := newStore(t, client, redisstore.Options{Prefix: prefix})
	indexNode := masterOf(t, client, prefix+"principal:alice")
	var ids []string
	for len(ids) < 3 {
		id := session.NewID()
		if masterOf(t, client, prefix+"{"+id+"}") == indexNode {
			continue
		}
		now := time.Now()
		if err := s.Apply(ctx, id, session.Delta{Create: true, SetPrincipal: true, Principal: "alice",
			Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatalf("Apply(Create, alice): %v", err)
		}
		ids = append(ids, id)
	}
	got, err := s.FindByPrincipal(ctx, "alice")
	if err != nil {
		t.Fatalf("FindByPrincipal: %v", err)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		t.Fatalf("FindByPrincipal(alice) = %v, want %v", got, want)
	}
	if err := s.Apply(ctx, ids[0], session.Delta{SetPrincipal: true, Principal: "bob"}); err != nil {
		t.Fatalf("Apply(SetPrincipal bob): %v", err)
	}
	// A deadline moved past the index score raises the score (a second
	// step on Cluster) and records it in the hash.
	far := time.Now().Add(10 * time.Hour)
	if err := s.Touch(ctx, ids[1], time.Now(), far); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	ikey := prefix + "principal:alice"
	if score, err := client.ZScore(ctx, ikey, ids[1]).Result(); err != nil || int64(score) < far.UnixMicro() {
		t.Errorf("after Touch to +10h: index score %.0f, %v, want at least the new deadline %d", score, err, far.UnixMicro())
	}
	if i, err := client.HGet(ctx, prefix+"{"+ids[1]+"}", "i").Int64(); err != nil || i < far.UnixMicro() {
		t.Errorf("after Touch to +10h: recorded index score %d, %v, want at least %d", i, err, far.UnixMicro())
	}
	// A second step that failed leaves a score behind the deadline: a
	// read still finds the session and raises the score.
	behind := time.Now().Add(time.Minute).UnixMicro()
	if err := client.ZAdd(ctx, ikey, redis.Z{Score: float64(behind), Member: ids[1]}).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FindByPrincipal(ctx, "alice"); err != nil || !slices.Contains(got, ids[1]) {
		t.Fatalf("FindByPrincipal with a score behind the deadline = %v, %v, want it to include %s", got, err, ids[1])
	}
	if score, err := client.ZScore(ctx, ikey, ids[1]).Result(); err != nil || int64(score) < far.UnixMicro() {
		t.Errorf("after FindByPrincipal saw a stale score: index score %.0f, %v, want raised to %d", score, err, far.UnixMicro())
	}

	n, err := s.DeleteByPrincipal(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("DeleteByPrincipal(alice) = %d, %v, want 2, nil", n, err)
	}
	if _, err := s.Load(ctx, ids[0]); err != nil {
		t.Fatalf("Load of the session moved to bob after DeleteByPrincipal(alice) = %v, want it kept", err)
	}
}

// masterOf returns the address of the master serving key.
func masterOf(t *testing.T, client *redis.ClusterClient, key string) string {
	t.Helper()
	node, err := client.MasterForKey(t.Context(), key)
	if err != nil {
		t.Fatalf("MasterForKey(%q): %v", key, err)
	}
	return node.Options().Addr
}

// testClusterWait: with WaitReplicas on Cluster, writes go to the key's
// master together with WAIT and succeed once its replica has them.
func testClusterWait(t *testing.T, client *redis.ClusterClient) {
	ctx := t.Context()
	s := newStore(t, client, redisstore.Options{WaitReplicas: 1, WaitTimeout: 400 * time.Millisecond})
	now := time.Now()
	for i := range 20 {
		id := session.NewID()
		if err := s.Apply(ctx, id, session.Delta{Create: true, Set: map[string][]byte{"i": []byte(strconv.Itoa(i))},
			SetPrincipal: true, Principal: "carol", Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatalf("Apply(Create) %d with WaitReplicas 1: %v", i, err)
		}
		if err := s.Touch(ctx, id, now, now.Add(2*time.Hour)); err != nil {
			t.Fatalf("Touch %d with WaitReplicas 1: %v", i, err)
		}
		if i%2 == 0 {
			if err := s.Delete(ctx, id); err != nil {
				t.Fatalf("Delete %d with WaitReplicas 1: %v", i, err)
			}
		}
	}
	if n, err := s.DeleteByPrincipal(ctx, "carol"); err != nil || n != 10 {
		t.Fatalf("DeleteByPrincipal(carol) with WaitReplicas 1 = %d, %v, want 10, nil", n, err)
	}
}

// testClusterFailover kills the master that serves a session and measures
// how long until a write to that session succeeds again. go-redis alone
// refreshes its slot map only every minute or on MOVED, so without the
// store's reload on connection errors no write succeeded within 60 s here
// (about 57 s in an earlier measurement); the target
// is the node timeout (the cluster's own failure detection) plus 3 s.
func testClusterFailover(t *testing.T, c *testserver.Cluster, client *redis.ClusterClient) {
	ctx := t.Context()
	prefix := uniquePrefix()
	s := newStore(t, client, redisstore.Options{Prefix: prefix})
	victim := c.Addrs[0]
	var id string
	for {
		id = session.NewID()
		if masterOf(t, client, prefix+"{"+id+"}") == victim {
			break
		}
	}
	now := time.Now()
	if err := s.Apply(ctx, id, session.Delta{Create: true, Set: map[string][]byte{"n": []byte("0")},
		Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Apply(Create): %v", err)
	}
	waitClusterReplicated(t, client, victim)

	killed := time.Now()
	c.Kill(0)
	var (
		attempts int
		lastErr  error
		resumed  time.Duration
	)
	const maxAttempts, patience = 3000, 60 * time.Second
	for attempts = 1; attempts <= maxAttempts; attempts++ {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		lastErr = s.Apply(wctx, id, session.Delta{Set: map[string][]byte{"n": []byte(strconv.Itoa(attempts))}})
		cancel()
		if lastErr == nil {
			resumed = time.Since(killed)
			break
		}
		if errors.Is(lastErr, session.ErrNotFound) {
			t.Fatalf("after the master was killed, the session written before is gone (attempt %d): the replica did not have it", attempts)
		}
		if time.Since(killed) > patience {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resumed == 0 {
		t.Fatalf("no write succeeded within %v (%d attempts) after killing master %s; last error: %v", patience, attempts, victim, lastErr)
	}
	target := c.NodeTimeout + 3*time.Second
	t.Logf("writes resumed %v after killing master %s (%d failed attempts; node timeout %v, target %v)",
		resumed.Round(10*time.Millisecond), victim, attempts-1, c.NodeTimeout, target)
	// The bound is looser than the target so a loaded machine does not
	// fail the test; the stale-slot-map behaviour it guards against takes
	// tens of seconds.
	if limit := c.NodeTimeout + 10*time.Second; resumed > limit {
		t.Errorf("writes resumed %v after the master was killed, want within %v (target %v)", resumed, limit, target)
	}
	rec, err := s.Load(ctx, id)
	if err != nil {
		t.Fatalf("Load after failover: %v", err)
	}
	if got := string(rec.Values["n"]); got != strconv.Itoa(attempts) {
		t.Errorf("after failover n = %q, want %q (the write that succeeded)", got, strconv.Itoa(attempts))
	}
}

// waitClusterReplicated waits until the master at addr has its replica's
// acknowledgement of everything written so far.
func waitClusterReplicated(t *testing.T, client *redis.ClusterClient, addr string) {
	t.Helper()
	var node *redis.Client
	_ = client.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			node = c
		}
		return nil
	})
	if node == nil {
		t.Fatalf("no master at %s", addr)
	}
	if n, err := node.Wait(t.Context(), 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 on %s = %d, %v: the replica did not acknowledge", addr, n, err)
	}
}
