package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/roamsession/roam/session"
)

// Load returns the session id with its attributes, read by one query (the
// session LEFT JOIN its attributes, so one consistent snapshot: never part
// of a delta). It returns session.ErrNotFound when no row has the id or its
// Expires has passed, whether or not the cleanup loop has deleted it yet;
// ErrClosed after Close; and a wrapped driver error when the database fails
// or is unreachable (the Manager then answers 503).
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	ctx, cancel, err := s.begin(ctx, "load")
	if err != nil {
		return nil, err
	}
	defer cancel()
	if !validText(id, MaxIDLen) {
		return nil, session.ErrNotFound
	}
	rows, err := s.db.QueryContext(ctx, s.q.load, id, s.now().UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: load session %s: %w", session.Fingerprint(id), err)
	}
	defer rows.Close()
	var rec *session.Record
	for rows.Next() {
		var (
			principal, name           sql.NullString
			created, touched, expires int64
			value                     []byte // Scan copies: the record owns it
		)
		if err := rows.Scan(&principal, &created, &touched, &expires, &name, &value); err != nil {
			return nil, fmt.Errorf("sqlstore: load session %s: %w", session.Fingerprint(id), err)
		}
		if rec == nil {
			rec = &session.Record{
				ID:        id,
				Values:    make(map[string][]byte),
				Principal: principal.String,
				Created:   fromMicros(created),
				Touched:   fromMicros(touched),
				Expires:   fromMicros(expires),
			}
		}
		if name.Valid {
			if value == nil {
				value = []byte{}
			}
			rec.Values[name.String] = value
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: load session %s: %w", session.Fingerprint(id), err)
	}
	if rec == nil {
		return nil, session.ErrNotFound
	}
	return rec, nil
}

// FindByPrincipal returns the ids of principal's live sessions, in no
// particular order; an empty slice when there are none. The anonymous
// principal "" is never indexed and finds nothing. It returns ErrClosed
// after Close and a wrapped driver error when the database fails.
func (s *Store) FindByPrincipal(ctx context.Context, principal string) ([]string, error) {
	ctx, cancel, err := s.begin(ctx, "find by principal")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ids := []string{}
	if !validText(principal, MaxPrincipalLen) {
		return ids, nil
	}
	rows, err := s.db.QueryContext(ctx, s.q.find, principal, s.now().UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: find sessions by principal: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlstore: find sessions by principal: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: find sessions by principal: %w", err)
	}
	return ids, nil
}

// DeleteByPrincipal destroys every live session of principal in one
// statement and reports how many it destroyed; principal's expired rows are
// left to the cleanup loop and not counted. The anonymous principal ""
// destroys nothing. It returns ErrClosed after Close and a wrapped driver
// error when the database fails.
func (s *Store) DeleteByPrincipal(ctx context.Context, principal string) (int, error) {
	ctx, cancel, err := s.begin(ctx, "delete by principal")
	if err != nil {
		return 0, err
	}
	defer cancel()
	if !validText(principal, MaxPrincipalLen) {
		return 0, nil
	}
	now := s.now().UnixMicro()
	var n int64
	err = s.write(ctx, func(ctx context.Context) error {
		if s.opts.Dialect == MySQL {
			ids, err := s.selectIDs(ctx, s.q.find, principal, now)
			if err != nil {
				return err
			}
			n, err = s.deleteLocked(ctx, ids, "principal = ? AND expires > ?", principal, now)
			return err
		}
		res, err := s.db.ExecContext(ctx, s.q.delByPrinc, principal, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: delete sessions by principal: %w", err)
	}
	return int(n), nil
}

// selectIDs returns the ids a one-column query finds.
func (s *Store) selectIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// deleteLocked deletes, on MySQL, the sessions among ids that still meet
// cond, by primary key in id order, and reports how many it deleted.
//
// A DELETE that finds its rows through a secondary index (principal,
// expires) locks the index entry before the row, while Apply locks the row
// (by primary key) before it changes the row's index entries: the opposite
// order, and InnoDB deadlocks between them under load. Reading the ids
// first without locks and deleting by primary key takes the row first, as
// everything else does; cond re-checks each row once it is locked, so a
// session that changed in between is left alone.
func (s *Store) deleteLocked(ctx context.Context, ids []string, cond string, condArgs ...any) (int64, error) {
	slices.Sort(ids)
	var total int64
	for chunk := range slices.Chunk(ids, 5*attrChunk) {
		args := make([]any, 0, len(chunk)+len(condArgs))
		for _, id := range chunk {
			args = append(args, id)
		}
		args = append(args, condArgs...)
		res, err := s.db.ExecContext(ctx, s.q.deleteIDs(len(chunk), cond), args...)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// Count reports the number of live sessions. It returns ErrClosed after
// Close and a wrapped driver error when the database fails.
func (s *Store) Count(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "count")
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	if err := s.db.QueryRowContext(ctx, s.q.count, s.now().UnixMicro()).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count sessions: %w", err)
	}
	return int(n), nil
}

// Range calls fn for each live session, in id order, until fn returns
// false. It reads pages of sessions, each with one query, and holds no
// connection or lock while fn runs, so fn may call the store (Load, Delete)
// even on a pool of one connection. A session changed or deleted during
// Range is seen either before or after the change. Options.Timeout bounds
// each page's query, not the whole walk. Range returns ErrClosed after
// Close and a wrapped driver error when the database fails.
func (s *Store) Range(ctx context.Context, fn func(*session.Record) bool) error {
	after := ""
	for {
		page, err := s.rangePage(ctx, after)
		if err != nil {
			return err
		}
		for _, rec := range page {
			if !fn(rec) {
				return nil
			}
		}
		if len(page) < rangePage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// rangePage returns up to rangePage live sessions with ids after after.
func (s *Store) rangePage(ctx context.Context, after string) ([]*session.Record, error) {
	ctx, cancel, err := s.begin(ctx, "range")
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.q.rangePage, after, s.now().UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: range sessions: %w", err)
	}
	defer rows.Close()
	var page []*session.Record
	var rec *session.Record
	for rows.Next() {
		var (
			id                        string
			principal, name           sql.NullString
			created, touched, expires int64
			value                     []byte
		)
		if err := rows.Scan(&id, &principal, &created, &touched, &expires, &name, &value); err != nil {
			return nil, fmt.Errorf("sqlstore: range sessions: %w", err)
		}
		if rec == nil || rec.ID != id {
			rec = &session.Record{
				ID:        id,
				Values:    make(map[string][]byte),
				Principal: principal.String,
				Created:   fromMicros(created),
				Touched:   fromMicros(touched),
				Expires:   fromMicros(expires),
			}
			page = append(page, rec)
		}
		if name.Valid {
			if value == nil {
				value = []byte{}
			}
			rec.Values[name.String] = value
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: range sessions: %w", err)
	}
	return page, nil
}
