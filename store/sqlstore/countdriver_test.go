package sqlstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync/atomic"
)

// counts is what a countingConnector's connections sent to the database.
type counts struct {
	queries, execs, prepares, begins, commits, rollbacks atomic.Int64
}

// snapshot is a copy of counts that can be compared.
type snapshot struct{ Queries, Execs, Prepares, Begins, Commits, Rollbacks int64 }

func (c *counts) snapshot() snapshot {
	return snapshot{c.queries.Load(), c.execs.Load(), c.prepares.Load(), c.begins.Load(), c.commits.Load(), c.rollbacks.Load()}
}

func (a snapshot) minus(b snapshot) snapshot {
	return snapshot{a.Queries - b.Queries, a.Execs - b.Execs, a.Prepares - b.Prepares, a.Begins - b.Begins, a.Commits - b.Commits, a.Rollbacks - b.Rollbacks}
}

func (a snapshot) String() string {
	return fmt.Sprintf("%d queries, %d execs, %d prepares, %d begins, %d commits, %d rollbacks",
		a.Queries, a.Execs, a.Prepares, a.Begins, a.Commits, a.Rollbacks)
}

// countingConnector wraps a real driver and counts every statement and
// transaction its connections run: the store under test talks to the real
// database through it, and the test reads what went over the wire.
type countingConnector struct {
	inner driver.Connector
	drv   driver.Driver
	c     *counts
}

// openCounting opens dsn with the registered driver drvName behind a
// counting wrapper.
func openCounting(drvName, dsn string) (*sql.DB, *counts, error) {
	probe, err := sql.Open(drvName, dsn)
	if err != nil {
		return nil, nil, err
	}
	drv := probe.Driver()
	probe.Close()
	var inner driver.Connector
	if dc, ok := drv.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, nil, err
		}
	} else {
		inner = dsnConnector{drv, dsn}
	}
	c := &counts{}
	return sql.OpenDB(countingConnector{inner: inner, drv: drv, c: c}), c, nil
}

type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.d.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.d }

func (cc countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: cc.c}, nil
}

// Driver returns a wrapper type, so that the store cannot recognise the
// dialect from it: the tests also check that Options.Dialect is then needed.
func (cc countingConnector) Driver() driver.Driver { return wrappedDriver{cc.drv} }

type wrappedDriver struct{ driver.Driver }

type countingConn struct {
	driver.Conn
	c *counts
}

func (c *countingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.c.prepares.Add(1)
	var st driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{Stmt: st, c: c.c}, nil
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		c.c.queries.Add(1)
	}
	return rows, err
}

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		c.c.execs.Add(1)
	}
	return res, err
}

func (c *countingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.c.begins.Add(1)
	var tx driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin() //nolint:staticcheck // the fallback database/sql itself uses
	}
	if err != nil {
		return nil, err
	}
	return countingTx{Tx: tx, c: c.c}, nil
}

func (c *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *countingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *countingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type countingTx struct {
	driver.Tx
	c *counts
}

func (t countingTx) Commit() error   { t.c.commits.Add(1); return t.Tx.Commit() }
func (t countingTx) Rollback() error { t.c.rollbacks.Add(1); return t.Tx.Rollback() }

type countingStmt struct {
	driver.Stmt
	c *counts
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.execs.Add(1)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return nil, fmt.Errorf("countingStmt: %T has no ExecContext", s.Stmt)
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.queries.Add(1)
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	return nil, fmt.Errorf("countingStmt: %T has no QueryContext", s.Stmt)
}

func (s *countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
