package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/roamsession/roam/store/sqlstore"
)

// TestRetryableRecognisesRealDeadlocks makes each server abort a
// transaction the way concurrent sessions could (two transactions locking
// two rows in opposite orders; on SQLite a writer finding the lock held)
// and checks that the store classifies exactly those errors as worth a
// retry, and an ordinary error as not.
func TestRetryableRecognisesRealDeadlocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend, db *sql.DB) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		mustExec(t, db, "CREATE TABLE deadlock_probe (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
		mustExec(t, db, "INSERT INTO deadlock_probe (id, n) VALUES (1, 0), (2, 0)")

		_, plain := db.ExecContext(ctx, "INSERT INTO deadlock_probe (id, n) VALUES (1, 0)")
		if plain == nil {
			t.Fatal("duplicate primary key was accepted")
		}
		if sqlstore.Retryable(be.dialect, plain) {
			t.Errorf("Retryable(%v) = true for a duplicate key, want false: retrying cannot help", plain)
		}

		var err error
		if be.dialect == sqlstore.SQLite {
			err = sqliteBusy(t, ctx, db)
		} else {
			err = deadlock(t, ctx, db, be.dialect)
		}
		if err == nil {
			t.Fatal("the conflicting transactions both committed; the probe did not provoke a conflict")
		}
		if !sqlstore.Retryable(be.dialect, err) {
			t.Errorf("Retryable(%v) = false, want true", err)
		}
	})
}

func mustExec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// deadlock locks row 1 in one transaction and row 2 in another, then makes
// each take the other's row; the server aborts one of them.
func deadlock(t *testing.T, ctx context.Context, db *sql.DB, d sqlstore.Dialect) error {
	upd := "UPDATE deadlock_probe SET n = n + 1 WHERE id = ?"
	if d == sqlstore.Postgres {
		upd = "UPDATE deadlock_probe SET n = n + 1 WHERE id = $1"
	}
	tx1, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	tx2, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback()
	if _, err := tx1.ExecContext(ctx, upd, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tx2.ExecContext(ctx, upd, 2); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := tx2.ExecContext(ctx, upd, 1) // waits for tx1
		if err != nil {
			tx2.Rollback() // an aborted PostgreSQL transaction keeps its locks until then
		}
		second <- err
	}()
	_, err1 := tx1.ExecContext(ctx, upd, 2) // closes the cycle
	if err1 != nil {
		tx1.Rollback()
	}
	err2 := <-second
	return errors.Join(err1, err2)
}

// sqliteBusy holds SQLite's write lock on one connection while another,
// with no busy timeout, tries to write.
func sqliteBusy(t *testing.T, ctx context.Context, db *sql.DB) error {
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	other, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	defer other.ExecContext(context.Background(), "PRAGMA busy_timeout = 5000")
	tx, err := holder.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the DSN's _txlock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	_, err = other.ExecContext(ctx, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 2")
	return err
}
