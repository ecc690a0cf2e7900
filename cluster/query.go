package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/session"
)

// FindByPrincipal returns the ids of the principal's live sessions. In
// ModeAll it reads the local index; in ModeBackup it asks every ready
// member for the sessions it holds (a member that does not answer is
// skipped: its sessions' backups answer for them). The anonymous principal
// "" has no sessions.
func (s *Store) FindByPrincipal(ctx context.Context, principal string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if principal == "" {
		return []string{}, nil
	}
	ids := s.localPrincipal(principal)
	if s.cfg.Mode == ModeAll {
		return ids, nil
	}
	err := s.scatter(ctx, func(addr string) error {
		var got wire.IDs
		if err := s.pc.call(ctx, addr, pathQuery, &wire.Query{Kind: wire.QueryPrincipal, Principal: principal}, &got); err != nil {
			return err
		}
		s.scatterMu.Lock()
		for _, id := range got.Items {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		s.scatterMu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// localPrincipal lists the principal's live sessions this node holds (in
// ModeBackup: those it is a holder of under its current view).
func (s *Store) localPrincipal(principal string) []string {
	now := s.nowNano()
	v := s.mem.view()
	out := []string{}
	for _, id := range s.tab.principalIDs(principal) {
		rec, _, _ := s.tab.load(id, now)
		if rec == nil || rec.Principal != principal {
			continue
		}
		if s.cfg.Mode == ModeBackup && !slices.Contains(s.holders(id, v.ready), s.self) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// scatter runs fn for every other ready member in parallel. Unreachable
// members are skipped; other failures are returned.
func (s *Store) scatter(ctx context.Context, fn func(addr string) error) error {
	v := s.mem.view()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, m := range v.ready {
		if m == s.self {
			continue
		}
		addr := v.peers[m]
		wg.Go(func() {
			if err := fn(addr); err != nil && !isUnreachable(err) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("cluster: query members: %w", first)
	}
	return nil
}

// DeleteByPrincipal destroys every session of principal, each as Delete
// does, and reports how many it destroyed.
func (s *Store) DeleteByPrincipal(ctx context.Context, principal string) (int, error) {
	ids, err := s.FindByPrincipal(ctx, principal)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := s.Delete(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Count reports the number of live sessions in the cluster.
func (s *Store) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.Range(ctx, func(*session.Record) bool { n++; return true })
	return n, err
}

// Range calls fn for each live session in the cluster until fn returns
// false. In ModeBackup it gathers each member's primary sessions first, so
// fn may call the store.
func (s *Store) Range(ctx context.Context, fn func(*session.Record) bool) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	recs := s.localPrimaries()
	if s.cfg.Mode == ModeBackup {
		seen := make(map[string]bool, len(recs))
		for _, r := range recs {
			seen[r.ID] = true
		}
		err := s.scatter(ctx, func(addr string) error {
			_, err := s.pc.stream(ctx, addr, pathQuery, &wire.Query{Kind: wire.QueryList}, func(t wire.Type, p []byte) error {
				var rs wire.Records
				if err := wire.Decode(t, p, &rs); err != nil {
					return err
				}
				s.scatterMu.Lock()
				for i := range rs.Items {
					if !seen[rs.Items[i].ID] {
						seen[rs.Items[i].ID] = true
						recs = append(recs, recordFromWire(&rs.Items[i]))
					}
				}
				s.scatterMu.Unlock()
				return nil
			})
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, r := range recs {
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// localPrimaries returns the live sessions this node is primary for (every
// live session it holds, in ModeAll).
func (s *Store) localPrimaries() []*session.Record {
	now := s.nowNano()
	v := s.mem.view()
	var out []*session.Record
	s.tab.each(func(e *entry) {
		if !e.alive(now) {
			return
		}
		if s.cfg.Mode == ModeBackup {
			h := s.holders(e.id, v.ready)
			if len(h) == 0 || h[0] != s.self {
				return
			}
		}
		out = append(out, e.record())
	})
	return out
}

// serveQuery answers a member's Query.
func (s *Store) serveQuery(ctx context.Context, q *wire.Query, out *frameWriter) {
	switch q.Kind {
	case wire.QueryPrincipal:
		_ = out.send(&wire.IDs{Items: s.localPrincipal(q.Principal)})
	case wire.QueryList:
		recs := s.localPrimaries()
		var count uint64
		batch := &wire.Records{}
		for i, r := range recs {
			if ctx.Err() != nil {
				return
			}
			batch.Items = append(batch.Items, *recordToWire(r))
			if len(batch.Items) == transferBatch || i == len(recs)-1 {
				if out.send(batch) != nil {
					return
				}
				count += uint64(len(batch.Items))
				batch.Items = batch.Items[:0]
			}
		}
		_ = out.send(&wire.End{Count: count})
	}
}
