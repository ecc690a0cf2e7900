package bench

import "time"

// Kind is what a virtual user asked for.
type Kind uint8

// The request kinds.
const (
	// KindLogin is POST /login.
	KindLogin Kind = iota
	// KindRead is GET /api/me.
	KindRead
	// KindWrite is POST /api/counter.
	KindWrite
)

func (k Kind) String() string {
	switch k {
	case KindLogin:
		return "login"
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	}
	return "unknown"
}

// Record is one request of one virtual user, as it was sent and answered.
// It holds only what was observed; Summarize judges it (kept, logged out,
// stale, lost increments) against the records before it.
type Record struct {
	// User is the virtual user's index.
	User int32
	Kind Kind
	// Status is the HTTP status, or 0 when no response came (a refused
	// or reset connection, a timeout).
	Status int
	// Node is the X-Roam-Node header of the response, "" when there was
	// none (no response, or the balancer answered itself).
	Node string
	// At is when the request was sent, measured from the start of the
	// load.
	At time.Duration
	// Latency is from sending the request to reading the whole response.
	Latency time.Duration
	// Counter is the counter the response reported (GET /api/me and
	// POST /api/counter answered 200), -1 otherwise.
	Counter int
	// OtherUser is set when a 200 from /api/me named a user other than
	// the one this virtual user logged in as.
	OtherUser bool
}

// Outcome is Summarize's verdict on one record.
type Outcome uint8

// The outcomes. Kept, LoggedOut, Stale and WrongUser are the verdicts on
// session requests (reads and writes); Login on logins that succeeded;
// Error5xx and ErrorOther on any request that failed.
const (
	// Kept: 200 for the user who logged in, and the counter reflects
	// every increment acknowledged so far (a write continues it).
	Kept Outcome = iota
	// LoggedOut: 401, the node did not know the session.
	LoggedOut
	// Stale: 200 for the right user, but the counter is behind an
	// acknowledged increment: the session survived, some of its writes
	// did not.
	Stale
	// WrongUser: 200 naming another user. It must never happen.
	WrongUser
	// Login: a login answered 200.
	Login
	// Error5xx: a 5xx answer (a store that is down, a balancer with no
	// backend left).
	Error5xx
	// ErrorOther: no answer at all, or a status the protocol does not
	// expect (400, 415, a 401 to a login).
	ErrorOther
)

func (o Outcome) String() string {
	return [...]string{"kept", "logged_out", "stale", "wrong_user", "login", "error_5xx", "error_other"}[o]
}

// judged reports whether o is a verdict on a session: the requests
// session_kept_ratio counts.
func (o Outcome) judged() bool { return o <= WrongUser }
