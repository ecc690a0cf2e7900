package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/roamsession/roam/session"
)

// Apply applies d to the session id in one transaction. It returns
// session.ErrNotFound, writing nothing, when the session does not exist or
// has expired and d.Create is false; with d.Create an expired session's rows
// are deleted first, so the new one starts empty. A key named in both d.Set
// and d.Del ends up set. Apply returns an error wrapping ErrInvalid for an
// id, attribute name or principal the schema cannot hold, ErrClosed after
// Close, and a wrapped driver error (after retrying deadlocks) when the
// database fails; a context already done changes nothing.
//
// Every transaction locks the session row first (the UPDATE or INSERT of
// sessions) and only then its attributes, so concurrent deltas of one
// session queue on that row instead of deadlocking on attribute rows.
func (s *Store) Apply(ctx context.Context, id string, d session.Delta) error {
	ctx, cancel, err := s.begin(ctx, "apply")
	if err != nil {
		return err
	}
	defer cancel()
	if !validText(id, MaxIDLen) {
		if d.Create {
			return fmt.Errorf("sqlstore: apply: session id of %d bytes: %w", len(id), ErrInvalid)
		}
		return session.ErrNotFound // nothing can have been stored under it
	}
	if d.SetPrincipal && d.Principal != "" && !validText(d.Principal, MaxPrincipalLen) {
		return fmt.Errorf("sqlstore: apply to session %s: principal of %d bytes: %w", session.Fingerprint(id), len(d.Principal), ErrInvalid)
	}
	for k := range d.Set {
		if !validText(k, MaxNameLen) {
			return fmt.Errorf("sqlstore: apply to session %s: attribute name %.40q: %w", session.Fingerprint(id), k, ErrInvalid)
		}
	}
	// Sorted, so that two transactions touching the same rows take their
	// locks in the same order.
	names := slices.Sorted(maps.Keys(d.Set))
	dels := make([]string, 0, len(d.Del))
	for _, k := range d.Del {
		// A name the schema cannot hold was never stored; one that is also
		// set is replaced anyway.
		if _, set := d.Set[k]; !set && validText(k, MaxNameLen) {
			dels = append(dels, k)
		}
	}
	slices.Sort(dels)
	dels = slices.Compact(dels)

	now := s.now().UnixMicro()
	err = s.write(ctx, func(ctx context.Context) error {
		if !d.Create && len(names) == 0 && len(dels) == 0 {
			// Only the session row changes: one statement, atomic by itself.
			return s.updateSession(ctx, s.db, id, d.SetPrincipal, d.Principal, d.Touched, d.Expires, now)
		}
		return s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			if d.Create {
				err = s.createSession(ctx, tx, id, &d, now)
			} else {
				err = s.updateSession(ctx, tx, id, d.SetPrincipal, d.Principal, d.Touched, d.Expires, now)
			}
			if err != nil {
				return err
			}
			if err := s.deleteAttrs(ctx, tx, id, dels); err != nil {
				return err
			}
			return s.upsertAttrs(ctx, tx, id, names, d.Set)
		})
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, session.ErrNotFound):
		return session.ErrNotFound
	}
	return fmt.Errorf("sqlstore: apply to session %s: %w", session.Fingerprint(id), err)
}

// execer is what both *sql.DB and *sql.Tx offer.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// principalArg is the stored form of a principal: NULL for the anonymous
// "", which keeps anonymous sessions out of the principal index.
func principalArg(p string) any {
	if p == "" {
		return nil
	}
	return p
}

// updateSession sets the given columns of a live session and bumps its
// version; it returns session.ErrNotFound when no live row has the id.
// The version bump makes every match change the row, so the rows affected
// say whether it matched even on MySQL, which counts only changed rows.
func (s *Store) updateSession(ctx context.Context, e execer, id string, setP bool, principal string, touched, expires time.Time, now int64) error {
	mask := 0
	args := make([]any, 0, 5)
	if setP {
		mask |= setPrincipal
		args = append(args, principalArg(principal))
	}
	if !touched.IsZero() {
		mask |= setTouched
		args = append(args, micros(touched))
	}
	if !expires.IsZero() {
		mask |= setExpires
		args = append(args, expires.UnixMicro())
	}
	args = append(args, id, now)
	res, err := e.ExecContext(ctx, s.q.update[mask], args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return session.ErrNotFound
	}
	return nil
}

// createSession inserts the session row of a Create, or merges into the
// live row when there is one. An expired row is deleted first (its
// attributes go with it), so that Create on an expired id starts empty.
func (s *Store) createSession(ctx context.Context, tx *sql.Tx, id string, d *session.Delta, now int64) error {
	if s.opts.Dialect == MySQL {
		// A plain read first: on InnoDB at REPEATABLE READ a DELETE that
		// finds nothing would gap-lock, and two logins inserting fresh ids
		// into the same gap would deadlock.
		var exp int64
		switch err := tx.QueryRowContext(ctx, s.q.loadExpires, id).Scan(&exp); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case exp <= now:
			if _, err := tx.ExecContext(ctx, s.q.dropExpired, id, now); err != nil {
				return err
			}
		}
	} else if _, err := tx.ExecContext(ctx, s.q.dropExpired, id, now); err != nil {
		return err
	}
	mask := 0
	principal := ""
	if d.SetPrincipal {
		mask |= setPrincipal
		principal = d.Principal
	}
	if !d.Touched.IsZero() {
		mask |= setTouched
	}
	if !d.Expires.IsZero() {
		mask |= setExpires
	}
	_, err := tx.ExecContext(ctx, s.q.create[mask], id, principalArg(principal), micros(d.Created), micros(d.Touched), expiresMicros(d.Expires))
	return err
}

// deleteAttrs deletes the named attributes of session id.
func (s *Store) deleteAttrs(ctx context.Context, tx *sql.Tx, id string, names []string) error {
	for chunk := range slices.Chunk(names, attrChunk) {
		args := make([]any, 0, 1+len(chunk))
		args = append(args, id)
		for _, k := range chunk {
			args = append(args, k)
		}
		if _, err := tx.ExecContext(ctx, s.q.deleteAttrs(len(chunk)), args...); err != nil {
			return err
		}
	}
	return nil
}

// upsertAttrs writes the named attributes of session id from set.
func (s *Store) upsertAttrs(ctx context.Context, tx *sql.Tx, id string, names []string, set map[string][]byte) error {
	for chunk := range slices.Chunk(names, attrChunk) {
		args := make([]any, 0, 3*len(chunk))
		for _, k := range chunk {
			v := set[k]
			if v == nil {
				v = []byte{} // nil would bind as NULL; the value is empty
			}
			args = append(args, id, k, v)
		}
		if _, err := tx.ExecContext(ctx, s.q.upsertAttrs(len(chunk)), args...); err != nil {
			return err
		}
	}
	return nil
}

// Delete destroys the session id and its attributes (the foreign key's
// cascade, or the trigger on SQLite). Deleting an absent id is not an
// error. There are no replicas to disagree, so a deleted session stays
// deleted: a later Apply without Create finds no row. Delete returns
// ErrClosed after Close and a wrapped driver error when the database fails.
func (s *Store) Delete(ctx context.Context, id string) error {
	ctx, cancel, err := s.begin(ctx, "delete")
	if err != nil {
		return err
	}
	defer cancel()
	if !validText(id, MaxIDLen) {
		return nil
	}
	err = s.write(ctx, func(ctx context.Context) error {
		_, err := s.db.ExecContext(ctx, s.q.delete, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: delete session %s: %w", session.Fingerprint(id), err)
	}
	return nil
}

// Touch sets the session's Touched and Expires with a single UPDATE; a zero
// time leaves that column as it is. It returns session.ErrNotFound when the
// session does not exist or has expired, ErrClosed after Close, and a
// wrapped driver error when the database fails.
func (s *Store) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	ctx, cancel, err := s.begin(ctx, "touch")
	if err != nil {
		return err
	}
	defer cancel()
	if !validText(id, MaxIDLen) {
		return session.ErrNotFound
	}
	now := s.now().UnixMicro()
	err = s.write(ctx, func(ctx context.Context) error {
		return s.updateSession(ctx, s.db, id, false, "", touched, expires, now)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, session.ErrNotFound):
		return session.ErrNotFound
	}
	return fmt.Errorf("sqlstore: touch session %s: %w", session.Fingerprint(id), err)
}
