package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// FindByPrincipal returns the ids of principal's live sessions. It reads
// the principal's index (one ZRANGE) and then verifies every member against
// its session hash (one pipelined HMGET), so an id whose session was
// deleted, has expired or moved to another principal is never returned,
// even when the index still lists it (see the package doc on Cluster). It
// also prunes members past their deadline. It returns an empty slice for
// the anonymous principal "" (which is never indexed), and a wrapped error
// when Redis fails or ctx ends.
func (s *Store) FindByPrincipal(ctx context.Context, principal string) ([]string, error) {
	ctx, cancel, err := s.begin(ctx, "find by principal")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ids, err := s.find(ctx, principal)
	if err != nil {
		return nil, fmt.Errorf("redisstore: find sessions of a principal: %w", err)
	}
	return ids, nil
}

// find is FindByPrincipal without the wrapping.
func (s *Store) find(ctx context.Context, principal string) ([]string, error) {
	out := []string{}
	if principal == "" {
		return out, nil
	}
	ikey := s.indexKey(principal)
	members, err := s.c.ZRangeWithScores(ctx, ikey, 0, -1).Result()
	if err != nil {
		s.noteErr(err)
		return nil, err
	}
	if len(members) == 0 {
		return out, nil
	}
	pipe := s.c.Pipeline()
	metas := make([]*redis.SliceCmd, len(members))
	for i, m := range members {
		metas[i] = pipe.HMGet(ctx, s.key(m.Member.(string)), fieldExpires, fieldPrinc)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.noteErr(err)
		return nil, err
	}
	now := time.Now()
	nowScore := float64(now.UnixMicro())
	var fix []redis.Z // live sessions whose score is below their deadline
	prune := false
	for i, m := range members {
		id := m.Member.(string)
		v := metas[i].Val()
		p, _ := v[1].(string)
		e, _ := v[0].(string)
		if v[1] == nil || p != principal {
			prune = prune || m.Score <= nowScore
			continue // deleted, or moved to another principal
		}
		exp, err := decodeTime(e)
		if err != nil || !live(exp, now) {
			prune = prune || m.Score <= nowScore
			continue
		}
		out = append(out, id)
		if want := indexScore(exp); want > m.Score {
			// Only a failed best-effort step on Cluster leaves a score
			// behind the deadline; without the fix, pruning would drop
			// this live session once the stale score passed.
			fix = append(fix, redis.Z{Score: want, Member: id})
		}
	}
	if len(fix) > 0 || prune {
		// Best effort, and safe to race with writers: GT never lowers a
		// score, and the prune comes after the fixes on the same key.
		pipe := s.c.Pipeline()
		if len(fix) > 0 {
			pipe.ZAddGT(ctx, ikey, fix...)
		}
		pipe.ZRemRangeByScore(ctx, ikey, "-inf", strconv.FormatInt(now.UnixMicro(), 10))
		if _, err := pipe.Exec(ctx); err != nil {
			s.noteErr(err)
			s.log.WarnContext(ctx, "redisstore: principal index not pruned", "error", err)
		}
	}
	return out, nil
}

// indexScore is the index score of a session that expires at t.
func indexScore(t time.Time) float64 {
	if t.IsZero() {
		return inf
	}
	return float64(t.UnixMicro())
}

var inf = func() float64 { f, _ := strconv.ParseFloat("+inf", 64); return f }()

// DeleteByPrincipal destroys every live session of principal and reports
// how many it destroyed. It finds them as FindByPrincipal does, then deletes
// each with a script that checks the session still belongs to principal, so
// a session that moved to another user meanwhile survives. A session of
// principal created while it runs may survive too. It destroys nothing for
// the anonymous principal "". On error it returns the number destroyed so
// far with a wrapped error.
func (s *Store) DeleteByPrincipal(ctx context.Context, principal string) (int, error) {
	ctx, cancel, err := s.begin(ctx, "delete by principal")
	if err != nil {
		return 0, err
	}
	defer cancel()
	ids, err := s.find(ctx, principal)
	if err != nil {
		return 0, fmt.Errorf("redisstore: delete sessions of a principal: %w", err)
	}
	n := 0
	for _, id := range ids {
		deleted, err := s.deleteOne(ctx, id, principal)
		if deleted {
			n++
		}
		if err != nil {
			return n, fmt.Errorf("redisstore: delete sessions of a principal: %w", err)
		}
	}
	return n, nil
}
