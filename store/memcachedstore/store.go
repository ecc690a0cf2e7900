package memcachedstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/roamsession/roam/session"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "roam:"

// Defaults of the read-modify-write retries. With eight goroutines writing
// one session back to back (the conformance suite's worst case), an Apply
// took one attempt at the median and at most 15 in thousands; 32 leaves
// room, and bounds the wait of a hopeless Apply to about half a second.
const (
	DefaultMaxAttempts = 32
	DefaultBackoff     = time.Millisecond
)

// maxKeyLen is memcached's key length limit.
const maxKeyLen = 250

// ErrConflict is returned (wrapped) by Apply and Touch when other writers
// to the same session changed it between every read and write for
// Options.MaxAttempts attempts. Nothing was written; the Manager answers the
// request with its error handler (503), and the user's retry applies.
var ErrConflict = errors.New("memcachedstore: too many concurrent writers to one session")

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Prefix is prepended to a session id to make its memcached key, so
	// several applications can share servers. It must be a legal memcached
	// key (no spaces or control characters) short enough to leave room for
	// an id within memcached's 250 bytes. Empty means DefaultPrefix.
	Prefix string

	// MaxAttempts bounds the read-modify-write attempts of one Apply or
	// Touch. Each attempt reads the blob with its CAS token (gets), applies
	// the delta to it and writes it back only if nobody wrote in between
	// (cas); a conflict retries on the fresh blob, so concurrent writers
	// of different keys all keep their writes. Zero means
	// DefaultMaxAttempts.
	MaxAttempts int

	// Backoff spreads retries out: before attempt n+1 the store waits a
	// uniformly random time below Backoff×2^(n-1), at most 32×Backoff,
	// so writers that collided do not collide again in lockstep. Zero
	// means DefaultBackoff.
	Backoff time.Duration

	// Logger receives reports of corrupt records. Nil means slog.Default().
	Logger *slog.Logger

	// Now returns the time Expires is compared with and item lifetimes are
	// computed from. Nil means time.Now.
	Now func() time.Time
}

// Store keeps sessions in memcached: one item per session, holding the
// whole record as a versioned, checksummed blob. Create one with New. A
// Store is safe for concurrent use.
type Store struct {
	c           *memcache.Client
	prefix      string
	maxAttempts int
	backoff     time.Duration
	log         *slog.Logger
	now         func() time.Time

	// bufs holds encode buffers between writes: gomemcache has sent an
	// item's value by the time Add or CompareAndSwap returns, and
	// allocating a fresh buffer of a large session each time cost more
	// than encoding into it. Holds *[]byte.
	bufs sync.Pool

	// beforeWrite, when set, runs between an attempt's read and its write.
	// Tests use it to put a concurrent Delete or writer exactly in the
	// window the CAS protects.
	beforeWrite func(key string)
}

var (
	_ session.Store   = (*Store)(nil)
	_ session.Toucher = (*Store)(nil)
)

// New returns a Store that keeps sessions through client (NewClient makes
// one with consistent server selection). The Store does not own client:
// the caller closes it after the last use of the Store. New returns an
// error naming the field when an option is invalid.
func New(client *memcache.Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("memcachedstore: New: client is nil")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if len(opts.Prefix)+session.IDLen > maxKeyLen || !legalKey(opts.Prefix) {
		return nil, fmt.Errorf("memcachedstore: Options.Prefix %q is not a legal memcached key prefix (no spaces or control characters, at most %d bytes)", opts.Prefix, maxKeyLen-session.IDLen)
	}
	if opts.MaxAttempts < 0 || opts.Backoff < 0 {
		return nil, errors.New("memcachedstore: Options.MaxAttempts and Options.Backoff must not be negative")
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff == 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{
		c:           client,
		prefix:      opts.Prefix,
		maxAttempts: opts.MaxAttempts,
		backoff:     opts.Backoff,
		log:         opts.Logger,
		now:         opts.Now,
	}, nil
}

// legalKey reports whether memcached's text protocol accepts s in a key.
func legalKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// key returns id's memcached key, or false when id cannot be part of one
// (the Manager only ever passes ids of session.NewID's shape, which can).
func (s *Store) key(id string) (string, bool) {
	if id == "" || len(s.prefix)+len(id) > maxKeyLen || !legalKey(id) {
		return "", false
	}
	return s.prefix + id, true
}

// Load returns the session id with one memcached get. It returns
// session.ErrNotFound when the item is absent, when the record's Expires
// has passed (memcached's TTL is only whole seconds, and is set to outlive
// Expires), and when the item is corrupt (logged: the user gets a fresh
// session rather than errors until the item's TTL ends). It returns a
// wrapped error when the server is down or hung (a refused connection
// fails at once; a hung server costs at most about two of the client's
// Timeouts, the dial and the exchange) or the record is of an unknown
// format version, and
// ctx's error, without a request, when ctx is already done.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memcachedstore: load: %w", err)
	}
	key, ok := s.key(id)
	if !ok {
		return nil, session.ErrNotFound
	}
	var it *memcache.Item
	err := s.do(func() (err error) {
		it, err = s.c.Get(key)
		return err
	})
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return nil, session.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("memcachedstore: load session %s: %w", session.Fingerprint(id), err)
	}
	rec, err := s.live(it, id, s.now())
	if err != nil {
		return nil, fmt.Errorf("memcachedstore: load session %s: %w", session.Fingerprint(id), err)
	}
	if rec == nil {
		return nil, session.ErrNotFound
	}
	return rec, nil
}

// live decodes it, the item of session id, and returns its record, or nil
// when the record has expired or is corrupt (which is logged). It returns
// an error for a record it must not treat as absent: one of an unknown
// format version.
func (s *Store) live(it *memcache.Item, id string, now time.Time) (*session.Record, error) {
	rec, err := decodeAs(it.Value, id)
	switch {
	case errors.Is(err, ErrCorrupt):
		s.log.Error("memcachedstore: corrupt session record treated as absent",
			"session", session.Fingerprint(id), "bytes", len(it.Value), "error", err)
		return nil, nil
	case err != nil:
		return nil, err
	case !rec.Expires.IsZero() && !now.Before(rec.Expires):
		return nil, nil
	}
	return rec, nil
}

// Apply applies d to the session id by read-modify-write under CAS: it
// reads the blob with gets, applies d, and writes it back with cas, which
// fails if anyone wrote the item in between; it then starts over on the
// fresh blob, at most Options.MaxAttempts times with jittered backoff, and
// returns a wrapped ErrConflict if every attempt lost.
//
// Without d.Create it returns session.ErrNotFound for a session that is
// absent, expired or corrupt, and also when the item vanished between the
// read and the write (deleted by a logout, or lost in a memcached restart):
// a CAS on a missing item fails and Apply never re-adds it, so a racing
// logout is never undone. With d.Create an absent session is created with
// add, which fails if another creator got there first (Apply then merges
// into that session), and an expired or corrupt one is replaced by an empty
// record. The item's TTL follows the record's Expires, rounded up to whole
// seconds plus two (see the package doc). Apply returns a wrapped error when a server is down or
// slow, and ctx's error when ctx is done before an attempt or during a
// backoff; an attempt in flight is bounded by the client's Timeout.
func (s *Store) Apply(ctx context.Context, id string, d session.Delta) error {
	if err := s.update(ctx, id, &d); err != nil {
		return fmt.Errorf("memcachedstore: apply to session %s: %w", session.Fingerprint(id), err)
	}
	return nil
}

// Touch sets the session's Touched and Expires (a zero time leaves that
// field as it is). It is a read-modify-write like Apply, not memcached's
// touch command: touch only moves the item's TTL, and the record's own
// Expires, which Load enforces, would still end the session at the old
// deadline. The Manager throttles touches (Options.TouchFraction), so the
// extra read costs little. Touch returns session.ErrNotFound when the
// session is absent, expired or deleted meanwhile, and the errors of Apply
// otherwise.
func (s *Store) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	d := session.Delta{Touched: touched, Expires: expires}
	if err := s.update(ctx, id, &d); err != nil {
		return fmt.Errorf("memcachedstore: touch session %s: %w", session.Fingerprint(id), err)
	}
	return nil
}

// Delete destroys the session id with one memcached delete; an absent item
// is not an error. A deleted session cannot come back through this store:
// every later Apply without Create finds no item and returns
// session.ErrNotFound, and one whose read came before the delete fails its
// CAS. (A memcached server that was taken out of the server list while
// running and put back later still holds what it held; see
// Selector.SetServers.) Delete returns a wrapped error when the server is
// down, and ctx's error when ctx is already done.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachedstore: delete: %w", err)
	}
	key, ok := s.key(id)
	if !ok {
		return nil
	}
	err := s.do(func() error { return s.c.Delete(key) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcachedstore: delete session %s: %w", session.Fingerprint(id), err)
	}
	return nil
}

// update runs the read-modify-write attempts of Apply and Touch.
func (s *Store) update(ctx context.Context, id string, d *session.Delta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, ok := s.key(id)
	if !ok {
		if d.Create {
			return fmt.Errorf("a %d-byte id cannot be part of a memcached key", len(id))
		}
		return session.ErrNotFound
	}
	for attempt := 1; ; attempt++ {
		done, err := s.attempt(key, id, d)
		if done {
			return err
		}
		if attempt == s.maxAttempts {
			return fmt.Errorf("%w: %d attempts", ErrConflict, attempt)
		}
		if err := s.wait(ctx, attempt); err != nil {
			return err
		}
	}
}

// attempt makes one read-modify-write. It returns done false when the write
// lost a race that a fresh attempt can win.
func (s *Store) attempt(key, id string, d *session.Delta) (done bool, err error) {
	var it *memcache.Item
	err = s.do(func() (err error) {
		it, err = s.c.Get(key)
		return err
	})
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		it = nil
	case err != nil:
		return true, err
	}
	now := s.now()
	var rec *session.Record
	if it != nil {
		if rec, err = s.live(it, id, now); err != nil {
			return true, err
		}
	}
	if rec == nil {
		if !d.Create {
			return true, session.ErrNotFound
		}
		rec = &session.Record{ID: id, Values: make(map[string][]byte, len(d.Set)), Created: d.Created}
	}
	apply(rec, d)
	buf := s.buffer()
	*buf = appendRecord((*buf)[:0], rec)
	defer s.recycle(buf)
	item := &memcache.Item{Key: key, Value: *buf, Expiration: expiration(rec.Expires, now)}
	if s.beforeWrite != nil {
		s.beforeWrite(key)
	}

	if it == nil {
		err = s.do(func() error { return s.c.Add(item) })
		if errors.Is(err, memcache.ErrNotStored) {
			return false, nil // another creator won; merge into its session
		}
		return true, err
	}
	// Replacing a dead (expired or corrupt) item also goes through cas, so
	// a concurrent creator's fresh session is not overwritten.
	item.CasID = it.CasID
	err = s.do(func() error { return s.c.CompareAndSwap(item) })
	switch {
	case errors.Is(err, memcache.ErrCASConflict):
		return false, nil
	case errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
		// The item is gone since the read: deleted (a logout), evicted or
		// lost with a restarted server. Only a creating delta may add it.
		if !d.Create {
			return true, session.ErrNotFound
		}
		return false, nil
	}
	return true, err
}

// maxPooledBuffer bounds the buffers kept for reuse, so one huge session
// does not pin its buffer in every pool slot.
const maxPooledBuffer = 256 << 10

func (s *Store) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func (s *Store) recycle(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		s.bufs.Put(b)
	}
}

// apply changes rec by d as the Delta contract says: deletions first, so a
// key named in both Set and Del ends up set.
func apply(rec *session.Record, d *session.Delta) {
	for _, k := range d.Del {
		delete(rec.Values, k)
	}
	for k, v := range d.Set {
		rec.Values[k] = v
	}
	if d.SetPrincipal {
		rec.Principal = d.Principal
	}
	if !d.Touched.IsZero() {
		rec.Touched = d.Touched
	}
	if !d.Expires.IsZero() {
		rec.Expires = d.Expires
	}
}

// wait sleeps before attempt+1: a random time below backoff×2^(attempt-1),
// capped at 32×backoff. It returns ctx's error if ctx ends first.
func (s *Store) wait(ctx context.Context, attempt int) error {
	limit := s.backoff << min(attempt-1, 5)
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs one memcached operation, and runs it once more if it failed on
// a pooled connection the server had closed (a memcached that restarted
// leaves every idle connection dead). Before the retry it drops the
// client's idle connections with Client.Close, which leaves the client
// usable, so the retry dials afresh instead of finding the next dead one.
// Every operation the store makes may be repeated: a get reads, a delete of
// a deleted item is a miss, and an add or cas that did land makes the
// repeat fail as a conflict, which re-reads and re-applies the (idempotent)
// delta. Timeouts and refused dials are not retried: a down server fails
// fast.
func (s *Store) do(op func() error) error {
	err := op()
	if err != nil && deadConn(err) {
		_ = s.c.Close()
		err = op()
	}
	return err
}

// deadConn reports whether err means the connection was closed by the peer.
func deadConn(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}
