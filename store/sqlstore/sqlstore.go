// Package sqlstore keeps sessions in a SQL database through database/sql:
// PostgreSQL, MySQL or MariaDB, or SQLite for a single machine.
//
// Each session is a row of a sessions table and each attribute a row of an
// attributes table, so a request's Delta writes only the rows it names, in
// one transaction, and two concurrent requests of one user that write
// different keys both keep their writes. A Load is one query (the session
// LEFT JOIN its attributes) and checks Expires itself, whether or not the
// cleanup loop has deleted the row yet.
//
// The caller opens the *sql.DB with the driver of its choice (pgx's stdlib,
// go-sql-driver/mysql, modernc.org/sqlite), passes it to New and runs
// Migrate once at startup:
//
//	db, err := sql.Open("pgx", "postgres://app@db/app")
//	…
//	store, err := sqlstore.New(db, sqlstore.Options{})
//	…
//	if err := store.Migrate(ctx); err != nil { … }
//	defer store.Close() // stops the cleanup loop; db stays open
//
// A Store implements session.Store, session.Toucher, session.PrincipalIndex
// and session.Lister, and passes the store/storetest suite against each
// real server. docs/stores/sql.md covers the schema and the settings that
// matter.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/roamsession/roam/session"
)

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("sqlstore: store is closed")

// ErrInvalid is returned (wrapped) by Apply for an id, attribute name or
// principal the schema cannot hold: empty or too long, not valid UTF-8, or
// holding a NUL byte. Nothing is written.
var ErrInvalid = errors.New("sqlstore: invalid id, attribute name or principal")

// Limits of what the schema holds, checked before anything is sent.
const (
	MaxIDLen        = 255  // bytes of a session id
	MaxNameLen      = 1024 // bytes of an attribute name
	MaxPrincipalLen = 1024 // bytes of a principal
)

// Defaults for the zero values of Options.
const (
	DefaultTablePrefix     = "roam_"
	DefaultCleanupInterval = 5 * time.Minute
	DefaultCleanupBatch    = 1000
	DefaultTimeout         = 5 * time.Second
	DefaultMaxRetries      = 4
)

// Options configures a Store. The zero value suits a database opened with
// one of the supported drivers.
type Options struct {
	// Dialect is the SQL flavour. Empty: recognised from the driver (pgx,
	// go-sql-driver/mysql, modernc.org/sqlite); a wrapped driver must set it.
	Dialect Dialect

	// TablePrefix starts the names of the store's tables and indexes:
	// <prefix>sessions and <prefix>attributes. Lower-case letters, digits
	// and underscores, starting with a letter or underscore, at most 40
	// bytes. Empty means DefaultTablePrefix. Several stores (or test runs)
	// can share a database with different prefixes.
	TablePrefix string

	// CleanupInterval is how often a background goroutine deletes expired
	// rows, each wait drawn at random between half and one and a half times
	// it so that many app instances started together do not all clean at
	// once. Cleanup frees space only: every method treats an expired session
	// as absent at once. Zero means DefaultCleanupInterval; negative turns
	// the loop off (run DeleteExpired from a job of your own instead).
	CleanupInterval time.Duration

	// CleanupBatch bounds the sessions one cleanup statement deletes, so
	// that a backlog of expired rows is removed in short transactions rather
	// than one long lock. Zero means DefaultCleanupBatch.
	CleanupBatch int

	// Timeout bounds each call (including its retries) when the caller's
	// context has no earlier deadline, so a database server that hangs
	// instead of refusing connections fails requests rather than holding
	// them. Zero means DefaultTimeout for PostgreSQL and MySQL, and none for
	// SQLite, which has no network to hang on (its busy_timeout bounds the
	// wait for another process's lock) and whose in-process calls are cheap
	// enough that a timer per call would cost a tenth of a Load. Negative
	// means no bound beyond the context's.
	Timeout time.Duration

	// MaxRetries is how many times a write transaction is run again after
	// the database aborted it for a deadlock or serialization failure (or
	// SQLite reported its lock busy), with a short random backoff. Zero
	// means DefaultMaxRetries; negative means none.
	MaxRetries int

	// Logger receives cleanup failures and retries. Nil means slog.Default().
	Logger *slog.Logger

	// Now returns the time Expires is compared with. Nil means time.Now.
	// The app's clock, not the database's, decides expiry, as in every roam
	// store; app servers' clocks must agree (NTP).
	Now func() time.Time
}

var prefixRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// Store is a session store on a SQL database, safe for concurrent use.
// Create one with New, run Migrate, and Close it when done.
type Store struct {
	db      *sql.DB
	q       *queries
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration
	retries int

	// wsem serialises this process's write transactions on SQLite, which
	// has one writer per database: waiting here honours ctx, while waiting
	// in SQLite's busy handler sleeps in steps of up to 100 ms. Nil for
	// the other dialects.
	wsem chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the cleanup loop has returned
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.Toucher        = (*Store)(nil)
	_ session.PrincipalIndex = (*Store)(nil)
	_ session.Lister         = (*Store)(nil)
)

// New returns a Store on db and starts its cleanup loop. It does not touch
// the database: run Migrate before serving. The Store does not own db:
// Close stops the Store, and closing db stays the caller's job (after
// Close). New returns an error naming the field when an option is invalid
// or the dialect cannot be recognised.
func New(db *sql.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: New: db is nil")
	}
	if opts.Dialect == "" {
		d, err := detectDialect(db)
		if err != nil {
			return nil, err
		}
		opts.Dialect = d
	}
	switch opts.Dialect {
	case Postgres, MySQL, SQLite:
	default:
		return nil, fmt.Errorf("sqlstore: Options.Dialect %q is not one of %q, %q, %q", opts.Dialect, Postgres, MySQL, SQLite)
	}
	if opts.TablePrefix == "" {
		opts.TablePrefix = DefaultTablePrefix
	}
	if !prefixRE.MatchString(opts.TablePrefix) {
		return nil, fmt.Errorf("sqlstore: Options.TablePrefix %q must be lower-case letters, digits and underscores, not starting with a digit, at most 40 bytes", opts.TablePrefix)
	}
	if opts.CleanupInterval == 0 {
		opts.CleanupInterval = DefaultCleanupInterval
	}
	if opts.CleanupBatch == 0 {
		opts.CleanupBatch = DefaultCleanupBatch
	}
	if opts.CleanupBatch < 0 {
		return nil, fmt.Errorf("sqlstore: Options.CleanupBatch %d must not be negative", opts.CleanupBatch)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
		if opts.Dialect == SQLite {
			opts.Timeout = -1
		}
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		db:      db,
		q:       newQueries(opts.Dialect, opts.TablePrefix),
		opts:    opts,
		log:     opts.Logger.With("store", "sql", "dialect", string(opts.Dialect)),
		now:     opts.Now,
		timeout: opts.Timeout,
		retries: max(opts.MaxRetries, 0),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if opts.Dialect == SQLite {
		s.wsem = make(chan struct{}, 1)
	}
	if opts.CleanupInterval > 0 {
		go s.cleanupLoop(opts.CleanupInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Dialect returns the dialect the Store speaks.
func (s *Store) Dialect() Dialect { return s.opts.Dialect }

// Close stops the cleanup loop and waits for it to return; a cleanup
// statement in flight is cancelled. Afterwards every method returns
// ErrClosed. Close does not close the *sql.DB. It is idempotent and always
// returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
	})
	<-s.done
	return nil
}

// begin checks that a call may proceed and returns its context, bounded by
// Options.Timeout. A context that is already done fails here, before any
// statement, so such a call changes nothing.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	if s.timeout > 0 {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.timeout {
			ctx, cancel := context.WithTimeout(ctx, s.timeout)
			return ctx, cancel, nil
		}
	}
	return ctx, func() {}, nil
}

// write runs fn, a write that may be a whole transaction, again when the
// database aborted it for a deadlock or serialization failure, at most
// Options.MaxRetries more times. On SQLite it holds the write semaphore
// around each attempt.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := s.lockedWrite(ctx, fn)
		if err == nil || attempt >= s.retries || !retryable(s.opts.Dialect, err) || ctx.Err() != nil {
			return err
		}
		// Random backoff, growing with each attempt: the transactions that
		// collided should not collide again in lockstep.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << attempt))
		s.log.DebugContext(ctx, "retrying write after a deadlock or serialization failure", "attempt", attempt+1, "backoff", d, "error", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		}
	}
}

func (s *Store) lockedWrite(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.wsem != nil {
		select {
		case s.wsem <- struct{}{}:
			defer func() { <-s.wsem }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fn(ctx)
}

// inTx runs fn in a transaction and commits it; any error rolls it back.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// micros converts a time to the stored form; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros converts a stored time back; 0 and never are the zero time.
func fromMicros(us int64) time.Time {
	if us == 0 || us == never {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// expiresMicros is the stored form of a deadline: the zero time, "no
// deadline", is stored as the largest value so that expires > now holds.
func expiresMicros(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	return t.UnixMicro()
}

// validText reports whether v fits a text column of at most max bytes:
// PostgreSQL's TEXT refuses invalid UTF-8 and NUL bytes, so every dialect
// refuses them alike and a store can move between databases.
func validText(v string, max int) bool {
	return len(v) > 0 && len(v) <= max && utf8.ValidString(v) && strings.IndexByte(v, 0) < 0
}
