package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/session"
)

// DefaultPrefix starts every key the store writes when Options.Prefix is
// empty.
const DefaultPrefix = "roam:"

// DefaultWaitTimeout bounds WAIT when Options.WaitReplicas is set and
// Options.WaitTimeout is zero.
const DefaultWaitTimeout = 500 * time.Millisecond

// ErrNotReplicated is returned (wrapped) by a write when Options.WaitReplicas
// is set and fewer replicas than that acknowledged it within WaitTimeout.
// The write has reached the master, and may or may not survive a failover.
var ErrNotReplicated = errors.New("redisstore: write not acknowledged by enough replicas")

// errCorrupt marks a hash under the store's prefix that this store did not
// write (or that was damaged): Load reports it as an absent session.
var errCorrupt = errors.New("redisstore: malformed session hash")

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Prefix starts every key of the store, so several applications (or
	// tests) can share one Redis. DefaultPrefix when empty. A session is the
	// hash Prefix+"{"+id+"}" and a principal's index the sorted set
	// Prefix+"principal:"+principal. Do not put a hash tag ({…}) in the
	// prefix: on Redis Cluster it would pull every session into one slot.
	Prefix string

	// WaitReplicas, when positive, makes every write (Apply, Touch, Delete,
	// DeleteByPrincipal) wait, with Redis's WAIT, until that many replicas
	// have acknowledged it, and fail with ErrNotReplicated when they have
	// not within WaitTimeout. With it a session written before the master
	// crashes is on the replica Sentinel or Cluster promotes; without it
	// (the default) replication is asynchronous and the writes of the last
	// moments before a crash can be lost. It makes each write wait for a
	// replica's round trip, and every write fail while fewer replicas are
	// up. Zero turns it off.
	WaitReplicas int

	// WaitTimeout bounds each WAIT. DefaultWaitTimeout when zero.
	WaitTimeout time.Duration

	// Timeout, when positive, bounds each method call, go-redis's own
	// retries included, on top of the caller's context. The client's
	// DialTimeout, ReadTimeout and WriteTimeout bound each network step;
	// this bounds their sum. Zero means only ctx and the client's timeouts.
	Timeout time.Duration

	// Logger receives failures of best-effort work (principal index updates
	// on Redis Cluster, cluster state reloads). Default slog.Default().
	Logger *slog.Logger
}

// Store keeps sessions in Redis: standalone, behind Sentinel or Cluster.
// It is safe for concurrent use. Create one with New.
type Store struct {
	c       redis.UniversalClient
	cluster *redis.ClusterClient // non-nil on Redis Cluster
	prefix  string
	iprefix string // prefix of the principal index keys
	// inline is "1" when the scripts may write the index keys themselves
	// (one server holds every key), "0" on Cluster.
	inline string

	waitN   int
	waitFor time.Duration
	timeout time.Duration
	log     *slog.Logger

	lastReload atomic.Int64 // unix nanoseconds of the last cluster state reload
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.Toucher        = (*Store)(nil)
	_ session.PrincipalIndex = (*Store)(nil)
	_ session.Lister         = (*Store)(nil)
)

// New returns a Store that keeps sessions through client: a *redis.Client
// (standalone, or Sentinel's failover client from redis.NewFailoverClient)
// or a *redis.ClusterClient, as redis.NewUniversalClient returns them.
// The Store does not own the client: the caller closes it, after the last
// use of the Store.
//
// New loads the store's scripts into the server's cache, so it returns an
// error when Redis cannot be reached (within ctx), and an error naming the
// field when opts is invalid. A *redis.Ring is refused: it spreads keys over
// independent servers, so a scan cannot see every session.
func New(ctx context.Context, client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: New: client is nil")
	}
	if _, ok := client.(*redis.Ring); ok {
		return nil, errors.New("redisstore: New: a *redis.Ring is not supported; use a standalone, Sentinel or Cluster client")
	}
	if opts.WaitReplicas < 0 {
		return nil, fmt.Errorf("redisstore: Options.WaitReplicas %d is negative", opts.WaitReplicas)
	}
	if opts.WaitTimeout < 0 {
		return nil, fmt.Errorf("redisstore: Options.WaitTimeout %v is negative", opts.WaitTimeout)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("redisstore: Options.Timeout %v is negative", opts.Timeout)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		c:       client,
		prefix:  opts.Prefix,
		iprefix: opts.Prefix + "principal:",
		inline:  "1",
		waitN:   opts.WaitReplicas,
		waitFor: opts.WaitTimeout,
		timeout: opts.Timeout,
		log:     opts.Logger,
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		s.cluster, s.inline = cc, "0"
	}
	if rt := readTimeout(client); s.waitN > 0 && rt > 0 && s.waitFor >= rt {
		// WAIT is read within the pipeline's ReadTimeout: a longer wait
		// would fail as a network timeout instead of reporting the count.
		return nil, fmt.Errorf("redisstore: Options.WaitTimeout %v must be shorter than the client's ReadTimeout %v", s.waitFor, rt)
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	for _, sc := range allScripts {
		// On Cluster this loads the script on every master. A master
		// promoted later, or a server restarted empty, lacks it; EVALSHA
		// then falls back to EVAL once per script.
		if err := sc.Load(ctx, client).Err(); err != nil {
			s.noteErr(err)
			return nil, fmt.Errorf("redisstore: New: load scripts: %w", err)
		}
	}
	return s, nil
}

// key is the hash of session id. The braces are a Cluster hash tag: the
// slot is computed from the id alone, so the key lands on one slot whatever
// the prefix.
func (s *Store) key(id string) string { return s.prefix + "{" + id + "}" }

// indexKey is the sorted set of principal's sessions.
func (s *Store) indexKey(principal string) string { return s.iprefix + principal }

// callCtx applies Options.Timeout to ctx.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout > 0 {
		return context.WithTimeout(ctx, s.timeout)
	}
	return ctx, func() {}
}

// begin is the start of every method: it refuses a context that is already
// done, so such a call changes nothing, and applies Options.Timeout.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("redisstore: %s: %w", op, err)
	}
	ctx, cancel := s.callCtx(ctx)
	return ctx, cancel, nil
}

// nowArg is the caller's clock as the scripts take it.
func nowArg(now time.Time) string { return strconv.FormatInt(now.UnixMicro(), 10) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Load returns the session id, read with one HGETALL. It returns
// session.ErrNotFound when there is no such session or its Expires has
// passed (whether or not Redis has dropped the key yet), and also, wrapped
// together with it, for a hash under the prefix that this store did not
// write. It returns a wrapped error when Redis fails or ctx ends.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	ctx, cancel, err := s.begin(ctx, "load")
	if err != nil {
		return nil, err
	}
	defer cancel()
	fields, err := s.c.HGetAll(ctx, s.key(id)).Result()
	if err != nil {
		s.noteErr(err)
		return nil, fmt.Errorf("redisstore: load: %w", err)
	}
	if len(fields) == 0 {
		return nil, session.ErrNotFound
	}
	rec, err := decodeRecord(id, fields)
	if err != nil {
		s.log.WarnContext(ctx, "redisstore: ignoring malformed session hash", "session", session.Fingerprint(id), "error", err)
		return nil, fmt.Errorf("redisstore: load: %w (%w)", session.ErrNotFound, err)
	}
	if !live(rec.Expires, time.Now()) {
		return nil, session.ErrNotFound
	}
	return rec, nil
}

// Apply applies d to the session id in one atomic script: the existence
// check, the attribute writes, the deadlines (PEXPIREAT follows d.Expires)
// and, outside Cluster, the principal index. It returns session.ErrNotFound
// when the session does not exist or has expired and d.Create is false;
// with d.Create it starts an empty session in that case. Apply deletes
// d.Del before it sets d.Set, so a key named in both ends up set.
//
// On Redis Cluster the principal index is another key in another slot, so
// Apply updates it in extra steps: before the script when d sets a
// principal (a failure there fails Apply before anything is written, so a
// session is never left out of its principal's index), and after it when
// the session leaves a principal or its deadline passes its index score
// (best effort: a failure is logged, not returned, and the next write
// tries again).
//
// It returns ErrNotReplicated (wrapped) when Options.WaitReplicas is set
// and not enough replicas acknowledged, and a wrapped error when Redis
// fails or ctx ends; the delta may then have been applied or not.
func (s *Store) Apply(ctx context.Context, id string, d session.Delta) error {
	ctx, cancel, err := s.begin(ctx, "apply")
	if err != nil {
		return err
	}
	defer cancel()
	nowT := time.Now()
	now := nowArg(nowT)
	key := s.key(id)
	expires := encodeTime(d.Expires)

	prescore := ""
	if s.cluster != nil && d.SetPrincipal && d.Principal != "" {
		prescore = slackScore(d.Expires, nowT)
		if err := s.indexStep(ctx, d.Principal, now, id, prescore); err != nil {
			return fmt.Errorf("redisstore: apply: index the session under its principal: %w", err)
		}
	}

	args := make([]any, 0, 13+2*len(d.Set)+len(d.Del))
	args = append(args, now, flag(d.Create), flag(d.SetPrincipal), s.inline, d.Principal,
		encodeTime(d.Created), encodeTime(d.Touched), expires, expireAtMillis(d.Expires),
		s.iprefix, id, prescore, len(d.Set))
	for k, v := range d.Set {
		args = append(args, k, v)
	}
	for _, k := range d.Del {
		args = append(args, k)
	}
	res, err := s.runWrite(ctx, applyScript, key, args)
	if res == nil {
		return fmt.Errorf("redisstore: apply: %w", err)
	}
	if res[0] != "1" {
		return session.ErrNotFound
	}
	if s.cluster != nil && len(res) == 5 {
		oldP, newP, newE, reindex := res[1], res[2], res[3], res[4]
		if oldP != "" && oldP != newP {
			s.bestEffortIndex(ctx, oldP, now, id, "", "moved to another principal")
		}
		if reindex == "1" {
			s.reindex(ctx, key, id, newP, newE, nowT)
		}
	}
	if err != nil {
		return fmt.Errorf("redisstore: apply: %w", err)
	}
	return nil
}

// Touch sets the session's Touched and Expires (a zero time leaves that
// field as it is) with one HSET of those two fields and one PEXPIREAT, in
// a script that first checks the session is live. It returns
// session.ErrNotFound when the session does not exist or has expired.
// On Redis Cluster, when the session has a principal and the new deadline
// passes its index score, raising the score is a second, best-effort step.
// Errors are as for Apply.
func (s *Store) Touch(ctx context.Context, id string, touched, expires time.Time) error {
	ctx, cancel, err := s.begin(ctx, "touch")
	if err != nil {
		return err
	}
	defer cancel()
	res, err := s.runWrite(ctx, touchScript, s.key(id), []any{
		nowArg(time.Now()), encodeTime(touched), encodeTime(expires), expireAtMillis(expires), s.inline, s.iprefix, id,
	})
	if res == nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if res[0] != "1" {
		return session.ErrNotFound
	}
	if s.cluster != nil && len(res) == 4 && res[3] == "1" {
		s.reindex(ctx, s.key(id), id, res[1], res[2], time.Now())
	}
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	return nil
}

// Delete destroys the session id: the hash is deleted (no tombstone is
// needed, since every write without Create checks that the hash exists).
// Deleting an absent id is not an error. It returns a wrapped error when
// Redis fails or ctx ends, and ErrNotReplicated as Apply does.
func (s *Store) Delete(ctx context.Context, id string) error {
	ctx, cancel, err := s.begin(ctx, "delete")
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.deleteOne(ctx, id, ""); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// deleteOne runs the delete script for id (only that principal's session
// when only is not ""), then, on Cluster, unindexes it. It reports whether
// it deleted a live session.
func (s *Store) deleteOne(ctx context.Context, id, only string) (bool, error) {
	now := nowArg(time.Now())
	res, err := s.runWrite(ctx, deleteScript, s.key(id), []any{now, s.inline, s.iprefix, id, only})
	if res == nil {
		return false, err
	}
	deleted := len(res) == 2 && res[0] == "1"
	if s.cluster != nil && deleted && res[1] != "" {
		s.bestEffortIndex(ctx, res[1], now, id, "", "deleted")
	}
	return deleted, err
}

// slackScore is the index score for a session that expires at expires:
// the deadline plus a quarter of the time left (the Lua slackScore), or
// "+inf" for none.
func slackScore(expires, now time.Time) string {
	if expires.IsZero() {
		return "+inf"
	}
	x, n := expires.UnixMicro(), now.UnixMicro()
	if x > n {
		x += (x - n) / 4
	}
	return strconv.FormatInt(x, 10)
}

// reindex is the Cluster path for a write whose new deadline has passed the
// session's index score: raise the score in principal's index, then record
// it in the hash. Both are best effort. Until both succeed the hash keeps
// its old score, so the next write of the session tries again; meanwhile a
// FindByPrincipal still finds the session until the old score passes, and
// raises the score itself when it sees it behind.
func (s *Store) reindex(ctx context.Context, key, id, principal, expires string, now time.Time) {
	exp, err := decodeTime(expires)
	if err != nil {
		return
	}
	score := slackScore(exp, now)
	if err := s.indexStep(ctx, principal, nowArg(now), id, score); err != nil {
		if !errors.Is(err, ErrNotReplicated) {
			s.log.WarnContext(ctx, "redisstore: principal index not updated", "session", session.Fingerprint(id), "error", err)
			return
		}
	}
	if _, err := s.runWrite(ctx, markIndexedScript, key, []any{principal, score}); err != nil && !errors.Is(err, ErrNotReplicated) {
		s.log.WarnContext(ctx, "redisstore: index score not recorded", "session", session.Fingerprint(id), "error", err)
	}
}

// indexStep runs the index script on principal's index (Cluster only).
func (s *Store) indexStep(ctx context.Context, principal, now, id, score string) error {
	_, err := s.runWrite(ctx, indexScript, s.indexKey(principal), []any{now, id, score})
	return err
}

// bestEffortIndex is an index step whose failure leaves the index a
// superset of, or briefly behind, the sessions (see the package doc): it is
// logged, not returned, because the session itself has been written.
func (s *Store) bestEffortIndex(ctx context.Context, principal, now, id, score, why string) {
	if err := s.indexStep(ctx, principal, now, id, score); err != nil && !errors.Is(err, ErrNotReplicated) {
		s.log.WarnContext(ctx, "redisstore: principal index not updated", "session", session.Fingerprint(id), "why", why, "error", err)
	}
}

// runWrite runs a write script on key and returns its reply as strings: a
// non-empty slice whenever the script ran, nil with the error otherwise.
// With Options.WaitReplicas it sends WAIT right behind the script on the
// same connection (WAIT counts the acknowledgements of that connection's
// writes) and returns the reply together with ErrNotReplicated when too few
// replicas answered.
func (s *Store) runWrite(ctx context.Context, sc *redis.Script, key string, args []any) ([]string, error) {
	keys := []string{key}
	if s.waitN == 0 {
		v, err := sc.Run(ctx, s.c, keys, args...).Result()
		if err != nil {
			s.noteErr(err)
			return nil, err
		}
		return replyStrings(v)
	}
	return s.runWaited(ctx, sc, keys, args)
}

// runWaited is runWrite with Options.WaitReplicas set.
func (s *Store) runWaited(ctx context.Context, sc *redis.Script, keys []string, args []any) ([]string, error) {
	key := keys[0]
	var pipeOn redis.Cmdable = s.c
	if s.cluster != nil {
		// A cluster pipeline would send the keyless WAIT to any node: go
		// to the key's master directly.
		node, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			s.noteErr(err)
			return nil, err
		}
		pipeOn = node
	}
	var (
		cmd  *redis.Cmd
		wait *redis.IntCmd
	)
	for _, eval := range []bool{false, true} {
		pipe := pipeOn.Pipeline()
		if eval {
			cmd = sc.Eval(ctx, pipe, keys, args...)
		} else {
			cmd = sc.EvalSha(ctx, pipe, keys, args...)
		}
		// *redis.Pipeline has Wait; the Pipeliner interface does not list it.
		wait = pipe.(interface {
			Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
		}).Wait(ctx, s.waitN, s.waitFor)
		_, _ = pipe.Exec(ctx) // each command carries its own error
		if !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			break
		}
	}
	if err := cmd.Err(); err != nil {
		s.noteErr(err)
		return nil, err
	}
	v, err := replyStrings(cmd.Val())
	if err != nil {
		return nil, err
	}
	acked, err := wait.Result()
	if err != nil {
		s.noteErr(err)
		return v, fmt.Errorf("%w: WAIT: %v", ErrNotReplicated, err)
	}
	if acked < int64(s.waitN) {
		return v, fmt.Errorf("%w: %d of %d acknowledged within %v", ErrNotReplicated, acked, s.waitN, s.waitFor)
	}
	return v, nil
}

// replyStrings reads a script's reply: an array of integers and strings.
func replyStrings(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, fmt.Errorf("redisstore: unexpected script reply %T", v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		switch e := e.(type) {
		case string:
			out[i] = e
		case int64:
			out[i] = strconv.FormatInt(e, 10)
		case nil:
			out[i] = ""
		default:
			return nil, fmt.Errorf("redisstore: unexpected script reply element %T", e)
		}
	}
	return out, nil
}
