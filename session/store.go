package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store.Load, and by Store.Apply for a delta that
// does not create, when no live session has the id.
var ErrNotFound = errors.New("session: not found")

// ErrNotSupported is returned by Manager methods that need an optional store
// interface (such as PrincipalIndex) the configured store does not implement.
var ErrNotSupported = errors.New("session: not supported by the store")

// Record is everything a store keeps for one session.
//
// Values holds each attribute encoded on its own by the Manager's Codec, so
// a store never decodes them and can keep one field, row or map entry per
// attribute. A Record returned by Load belongs to the caller: the store must
// not keep references to it or to its maps and slices.
type Record struct {
	ID        string
	Values    map[string][]byte
	Principal string    // the user the session belongs to; "" when anonymous
	Created   time.Time // when the session was created; fixes its absolute lifetime
	Touched   time.Time // last recorded activity; fixes its idle deadline
	Expires   time.Time // when the store may forget the session: min(idle, absolute) deadline
}

// Size reports the encoded size of the record's attributes: the sum of the
// lengths of every key and value. The Manager's MaxSize limit counts this.
func (r *Record) Size() int {
	n := 0
	for k, v := range r.Values {
		n += len(k) + len(v)
	}
	return n
}

// Delta is one change to one session: the attributes set and deleted by a
// request, and the new deadlines. A store applies a delta atomically: either
// every part of it is visible afterwards or none is. Attributes the delta does
// not name are left as they are, which is what lets two concurrent requests
// of one user that write different keys both survive.
type Delta struct {
	// Create makes Apply create the session when it does not exist. Without
	// it Apply returns ErrNotFound for an absent session, so a request that
	// raced a logout cannot bring the destroyed session back.
	Create bool

	Set map[string][]byte // attributes to store, replacing any previous value
	Del []string          // attributes to remove; absent keys are ignored

	// SetPrincipal makes Apply replace the session's principal with Principal
	// (and move it in the principal index, where the store keeps one).
	SetPrincipal bool
	Principal    string

	Created time.Time // with Create: the creation time; ignored otherwise
	Touched time.Time // zero: unchanged
	Expires time.Time // zero: unchanged; the store's TTL follows it
}

// Empty reports whether the delta changes nothing at all.
func (d *Delta) Empty() bool {
	return !d.Create && len(d.Set) == 0 && len(d.Del) == 0 && !d.SetPrincipal &&
		d.Touched.IsZero() && d.Expires.IsZero()
}

// Store keeps sessions. Every store in roam, and any a user writes, passes
// the conformance suite in store/storetest.
//
// Implementations must be safe for concurrent use. Expires is a hard limit:
// Load must return ErrNotFound for a record whose Expires has passed, whether
// or not the backend has already dropped it (the Manager also enforces its own
// idle and absolute timeouts at load time, whatever the store's TTL does).
//
// The conformance suite holds stores to these readings of the contract, which
// the Manager relies on:
//   - An expired session is absent for every method: Apply without Create and
//     Touch return ErrNotFound for it, FindByPrincipal, Count and Range leave
//     it out, and Apply with Create on its id starts an empty record.
//   - Apply with Create on a live session merges the delta like a plain
//     Apply; Created is used only when the record is actually created.
//   - A session whose attributes are all deleted still exists until it is
//     deleted or expires.
//   - A key appears in at most one of Delta.Set and Delta.Del.
//   - Load returns a nil record with ErrNotFound.
//   - A method called with a context that is already done returns an error
//     wrapping ctx.Err() and changes nothing.
type Store interface {
	// Load returns the session with the given id. It returns ErrNotFound
	// when no live session has the id, and a wrapped error when the backend
	// fails.
	Load(ctx context.Context, id string) (*Record, error)

	// Apply applies d to the session id atomically. It returns ErrNotFound
	// when the session does not exist and d.Create is false.
	Apply(ctx context.Context, id string, d Delta) error

	// Delete destroys the session id. Deleting an absent id is not an error.
	// A deleted session must never come back, whatever replicas or late
	// writes the store has: a later Apply without Create returns ErrNotFound.
	Delete(ctx context.Context, id string) error
}

// Toucher is implemented by stores that can extend a session's deadlines
// cheaper than a general Apply (a Redis PEXPIREAT, a single UPDATE). The
// Manager uses it for requests that only keep a session alive.
type Toucher interface {
	// Touch sets the session's Touched and Expires. It returns ErrNotFound
	// when the session does not exist.
	Touch(ctx context.Context, id string, touched, expires time.Time) error
}

// PrincipalIndex is implemented by stores that can find every session of a
// principal (a user), so an application can "log out all my devices". The
// anonymous principal "" is never indexed: FindByPrincipal("") returns
// nothing and DeleteByPrincipal("") destroys nothing.
type PrincipalIndex interface {
	// FindByPrincipal returns the ids of the live sessions of principal, in
	// no particular order. It returns an empty slice when there are none.
	FindByPrincipal(ctx context.Context, principal string) ([]string, error)

	// DeleteByPrincipal destroys every session of principal and reports how
	// many it destroyed.
	DeleteByPrincipal(ctx context.Context, principal string) (int, error)
}

// Lister is implemented by stores that can enumerate their sessions, for
// admin pages and metrics. Stores that cannot (memcached) do not fake it.
type Lister interface {
	// Count reports the number of live sessions.
	Count(ctx context.Context) (int, error)

	// Range calls fn for each live session until fn returns false. The
	// records are copies; Range sees a session that is changed or deleted
	// while it runs either before or after the change. fn may call the
	// store's other methods.
	Range(ctx context.Context, fn func(*Record) bool) error
}
