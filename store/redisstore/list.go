package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/session"
)

// scanBatch is the COUNT hint of each SCAN, and so about how many sessions
// one pipelined read fetches.
const scanBatch = 256

// Count reports the number of live sessions. It SCANs the store's keys (on
// every master on Cluster) and reads each one's deadline, so it costs a
// pass over the whole keyspace of the server: it is for admin pages and
// metrics, not for every request. It returns a wrapped error when Redis
// fails or ctx ends.
func (s *Store) Count(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "count")
	if err != nil {
		return 0, err
	}
	defer cancel()
	n := 0
	err = s.scan(ctx, func(ctx context.Context, keys []string, seen map[string]struct{}) (bool, error) {
		pipe := s.c.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HGet(ctx, k, fieldExpires)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return false, err
		}
		now := time.Now()
		for i, k := range keys {
			e, err := cmds[i].Result()
			if err != nil {
				continue // gone since the SCAN
			}
			if exp, err := decodeTime(e); err == nil && live(exp, now) {
				seen[k] = struct{}{}
				n++
			}
		}
		return true, nil
	})
	if err != nil {
		return 0, fmt.Errorf("redisstore: count sessions: %w", err)
	}
	return n, nil
}

// Range calls fn for each live session until fn returns false. It SCANs
// the store's keys (on every master, one after the other, on Cluster) and
// reads them in pipelined batches; fn runs with no lock held and may call
// the store. A session changed while Range runs is seen before or after the
// change; one created or deleted meanwhile may or may not be visited.
// Range remembers the ids it visited (SCAN may return a key twice), so its
// memory grows with the number of sessions. It returns a wrapped error when
// Redis fails or ctx ends.
func (s *Store) Range(ctx context.Context, fn func(*session.Record) bool) error {
	ctx, cancel, err := s.begin(ctx, "range")
	if err != nil {
		return err
	}
	defer cancel()
	err = s.scan(ctx, func(ctx context.Context, keys []string, seen map[string]struct{}) (bool, error) {
		pipe := s.c.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HGetAll(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, err
		}
		now := time.Now()
		for i, k := range keys {
			rec, err := decodeRecord(s.idOf(k), cmds[i].Val())
			if err != nil || !live(rec.Expires, now) {
				continue // gone since the SCAN, expired, or not ours
			}
			seen[k] = struct{}{}
			if !fn(rec) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: range sessions: %w", err)
	}
	return nil
}

// idOf is the session id of a key matched by the scan pattern.
func (s *Store) idOf(key string) string {
	return strings.TrimSuffix(strings.TrimPrefix(key, s.prefix+"{"), "}")
}

// scan calls batch with every batch of session keys SCAN returns on each
// master, leaving out keys already in seen (batch adds those it counted),
// until batch returns false or an error.
func (s *Store) scan(ctx context.Context, batch func(ctx context.Context, keys []string, seen map[string]struct{}) (bool, error)) error {
	nodes, err := s.masters(ctx)
	if err != nil {
		s.noteErr(err)
		return err
	}
	pattern := escapeGlob(s.prefix) + "{*}"
	seen := map[string]struct{}{}
	for _, node := range nodes {
		var cursor uint64
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			keys, next, err := node.ScanType(ctx, cursor, pattern, scanBatch, "hash").Result()
			if err != nil {
				s.noteErr(err)
				return err
			}
			fresh := keys[:0]
			for _, k := range keys {
				if _, dup := seen[k]; !dup {
					fresh = append(fresh, k)
				}
			}
			if len(fresh) > 0 {
				more, err := batch(ctx, fresh, seen)
				if err != nil {
					s.noteErr(err)
					return err
				}
				if !more {
					return nil
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// masters returns the clients to SCAN: the one server, or every master of
// the cluster. They are collected first and scanned one after the other,
// because ForEachMaster runs its function concurrently and Range's fn must
// not be called from several goroutines.
func (s *Store) masters(ctx context.Context) ([]redis.UniversalClient, error) {
	if s.cluster == nil {
		return []redis.UniversalClient{s.c}, nil
	}
	var (
		mu    sync.Mutex
		nodes []redis.UniversalClient
	)
	err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		nodes = append(nodes, c)
		mu.Unlock()
		return nil
	})
	return nodes, err
}

// escapeGlob quotes the characters SCAN's MATCH pattern treats specially,
// so a prefix is matched literally.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
