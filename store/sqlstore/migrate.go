package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
)

// Migrate creates the store's tables, indexes (and on SQLite its trigger)
// when they are missing, and changes nothing that exists: it is safe to run
// at every startup, from several app instances at once. On PostgreSQL it
// runs in one transaction under an advisory lock, so concurrent Migrates
// neither fail nor leave half a schema. It returns ErrClosed after Close and
// a wrapped driver error (naming the statement's table) when the database
// refuses, for example for lack of the CREATE privilege.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	// DDL may wait on locks held by live traffic; give it more room than
	// one request.
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 6*s.timeout)
		defer cancel()
	}
	err := s.lockedWrite(ctx, func(ctx context.Context) error {
		switch s.opts.Dialect {
		case Postgres:
			return s.inTx(ctx, func(tx *sql.Tx) error {
				// Two CREATE TABLE IF NOT EXISTS racing on PostgreSQL can
				// both pass the check and one fail on the catalog's unique
				// index; the lock makes the second wait and then find the
				// table.
				h := fnv.New64a()
				h.Write([]byte("roam sqlstore migrate " + s.opts.TablePrefix))
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
					return err
				}
				return s.runSchema(ctx, tx)
			})
		case SQLite:
			return s.inTx(ctx, func(tx *sql.Tx) error { return s.runSchema(ctx, tx) })
		default:
			// MySQL commits each DDL statement on its own anyway; its
			// metadata locks make concurrent IF NOT EXISTS safe.
			return s.runSchema(ctx, s.db)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return nil
}

func (s *Store) runSchema(ctx context.Context, e execer) error {
	for _, stmt := range s.q.schema {
		if _, err := e.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%.60s…: %w", stmt, err)
		}
	}
	return nil
}
