package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// reloadEvery throttles cluster state reloads triggered by errors: at most
// one per interval, however many requests fail at once.
const reloadEvery = 200 * time.Millisecond

// noteErr reacts to a failed command. On Redis Cluster, go-redis refreshes
// its slot map only every minute or when a node answers MOVED or ASK; a
// master that crashed answers nothing, so without this the client would
// keep sending that master's slots to a dead address for up to a minute
// after its replica took over. A connection error or a topology reply
// (CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY, LOADING) therefore reloads
// the cluster state, throttled; the reload runs in the background and the
// next request uses the new map. Sentinel's failover client follows
// +switch-master itself and needs nothing here.
func (s *Store) noteErr(err error) {
	if s.cluster == nil || !topologyError(err) {
		return
	}
	now := time.Now().UnixNano()
	last := s.lastReload.Load()
	if now-last < int64(reloadEvery) || !s.lastReload.CompareAndSwap(last, now) {
		return
	}
	// ReloadState returns at once; go-redis reloads in a goroutine of its
	// own and coalesces concurrent requests.
	s.cluster.ReloadState(context.Background())
}

// topologyError reports whether err may mean the cluster changed shape: a
// network failure of any kind (refused, reset, timed out, pool exhausted)
// or a reply that says so. Ordinary reply errors and the caller's own
// cancellation do not.
func topologyError(err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return false
	case redis.IsClusterDownError(err), redis.IsTryAgainError(err), redis.IsMasterDownError(err),
		redis.IsReadOnlyError(err), redis.IsLoadingError(err):
		return true
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

// readTimeout returns the client's ReadTimeout after go-redis filled its
// defaults (positive: the timeout; otherwise none), or 0 for a client type
// whose options are not known.
func readTimeout(c redis.UniversalClient) time.Duration {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ReadTimeout
	case *redis.ClusterClient:
		return c.Options().ReadTimeout
	}
	return 0
}
