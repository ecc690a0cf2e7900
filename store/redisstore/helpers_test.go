package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/store/redisstore"
)

// prefixes hands every store of a test binary its own key prefix, so stores
// sharing one server never see each other's sessions.
var prefixes atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("roamtest%d:", prefixes.Add(1)) }

// newStore opens a store with a fresh prefix on client and fails t if it
// cannot.
func newStore(t testing.TB, client redis.UniversalClient, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = uniquePrefix()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, client, opts)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return s
}

// standaloneClient returns a client of addr with short timeouts (so a dead
// server fails a call fast), closed when t ends.
func standaloneClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		// One dial per attempt: go-redis's default of five, 100 ms apart,
		// multiplied by its command retries, keeps a request to a dead
		// server waiting for seconds.
		DialerRetries: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitReplicaOnline waits until the master that client talks to has n
// replicas online. testserver returns a replica once the replica's link is
// up, but the master streams writes to it (and counts it for WAIT) only
// after the replica's first acknowledgement, up to a second later.
func waitReplicaOnline(t testing.TB, client *redis.Client, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		// A write of our own, so WAIT has an offset to wait for.
		err := client.Set(ctx, "roamtest:replica-probe", time.Now().String(), time.Minute).Err()
		got, werr := client.Wait(ctx, n, 100*time.Millisecond).Result()
		if err == nil && werr == nil && got >= int64(n) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("master did not count %d online replicas within 10s (last SET: %v, WAIT: %d, %v)", n, err, got, werr)
		}
	}
}
