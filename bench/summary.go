package bench

import (
	"slices"
	"time"
)

// Verdict is Summarize's judgement of one user's records.
type Verdict struct {
	// Outcomes holds one verdict per record, in the records' order.
	Outcomes []Outcome
	// Lost counts the acknowledged increments this user's later answers
	// did not reflect (see Summarize).
	Lost int
	// Acked counts the increments acknowledged with a 200.
	Acked int
}

// Judge replays one user's records, in the order they were sent, and
// judges each. It tracks the highest counter acknowledged since the
// user's last login (a login starts a fresh session, counter 0):
//
//   - a 200 from POST /api/counter acknowledges its counter; the server
//     read counter−1 before incrementing, so every acknowledged increment
//     above counter−1 has been lost;
//   - a 200 from GET /api/me must show at least the acknowledged counter;
//     the increments above what it shows have been lost;
//   - a 401 (or a 200 for another user) means the session is gone: every
//     increment acknowledged since the login is lost, and the user logs
//     in again from zero.
//
// After a loss the count restarts from what the server showed, so one
// lost increment is counted once however many answers miss it. Answers
// that failed (5xx, no answer) acknowledge nothing and lose nothing.
func Judge(recs []Record) Verdict {
	v := Verdict{Outcomes: make([]Outcome, len(recs))}
	acked := 0
	for i, r := range recs {
		var o Outcome
		switch {
		case r.Status == 0:
			o = ErrorOther
		case r.Status >= 500:
			o = Error5xx
		case r.Kind == KindLogin:
			o = ErrorOther
			if r.Status == 200 {
				o, acked = Login, 0
			}
		case r.Status == 401:
			o = LoggedOut
			v.Lost += acked
			acked = 0
		case r.Status != 200 || r.Counter < 0:
			o = ErrorOther
		case r.OtherUser:
			o = WrongUser
			v.Lost += acked
			acked = 0
		default:
			base := r.Counter // what the server started from
			if r.Kind == KindWrite {
				base--
			}
			o = Kept
			if base < acked {
				o = Stale
				v.Lost += acked - base
				acked = base
			}
			if r.Kind == KindWrite {
				v.Acked++
				acked = max(acked, r.Counter)
			}
		}
		v.Outcomes[i] = o
	}
	return v
}

// Tally counts outcomes.
type Tally struct {
	Requests    int `json:"requests"`
	Logins      int `json:"logins"`
	Kept        int `json:"kept"`
	LoggedOut   int `json:"logged_out"`
	Stale       int `json:"stale"`
	WrongUser   int `json:"wrong_user"`
	Errors5xx   int `json:"errors_5xx"`
	ErrorsOther int `json:"errors_other"`
}

func (t *Tally) add(o Outcome) {
	t.Requests++
	switch o {
	case Kept:
		t.Kept++
	case LoggedOut:
		t.LoggedOut++
	case Stale:
		t.Stale++
	case WrongUser:
		t.WrongUser++
	case Login:
		t.Logins++
	case Error5xx:
		t.Errors5xx++
	case ErrorOther:
		t.ErrorsOther++
	}
}

// Judged returns the number of session requests that got a verdict on
// their session: kept, logged out, stale or wrong user.
func (t Tally) Judged() int { return t.Kept + t.LoggedOut + t.Stale + t.WrongUser }

// KeptRatio returns Kept over Judged, or 1 when nothing was judged (no
// session request got an answer: nothing was seen lost). Failed requests
// are not in it: they say nothing about the session, and are reported
// as errors.
func (t Tally) KeptRatio() float64 {
	if t.Judged() == 0 {
		return 1
	}
	return float64(t.Kept) / float64(t.Judged())
}

// Window is one slice of a run's timeline.
type Window struct {
	// StartS is the window's start in seconds since the load began.
	StartS float64 `json:"start_s"`
	Tally
	KeptRatio float64 `json:"kept_ratio"`
}

// Summary is what a run's records add up to.
type Summary struct {
	Tally
	KeptRatio      float64
	UsersLoggedOut int // users who got at least one 401 or another user's session
	UsersAllKept   int // users every one of whose judged requests was kept
	Lost, Acked    int
	Latency        Histogram // every request that got an answer
	PerNode        map[string]int
	// PerNodeBefore counts, like PerNode, the requests sent before the
	// cut Summarize was given (all of them when it was 0).
	PerNodeBefore map[string]int
	// Before and After tally the requests sent before the cut and from
	// it on; both are empty when there was no cut.
	Before, After Tally
	// Statuses counts the answers by HTTP status, 0 for no answer.
	Statuses map[int]int
	Timeline []Window
}

// Summarize judges every user's records (see Judge) and adds them up.
// byUser[i] holds user i's records in the order they were sent. window is
// the width of the timeline's slices (no timeline when it is 0) and span
// the length of the load, which the timeline covers. cut, when positive,
// is when the first fault struck: PerNodeBefore counts only the requests
// sent before it, the balance of the undisturbed cluster.
func Summarize(byUser [][]Record, window, span, cut time.Duration) *Summary {
	s := &Summary{PerNode: map[string]int{}, PerNodeBefore: map[string]int{}, Statuses: map[int]int{}}
	if window > 0 && span > 0 {
		n := int((span + window - 1) / window)
		s.Timeline = make([]Window, n)
		for i := range s.Timeline {
			s.Timeline[i].StartS = (time.Duration(i) * window).Seconds()
		}
	}
	for _, recs := range byUser {
		v := Judge(recs)
		s.Lost += v.Lost
		s.Acked += v.Acked
		loggedOut, judged, kept := false, 0, 0
		for i, r := range recs {
			o := v.Outcomes[i]
			s.add(o)
			s.Statuses[r.Status]++
			if cut > 0 {
				if r.At < cut {
					s.Before.add(o)
				} else {
					s.After.add(o)
				}
			}
			if o == LoggedOut || o == WrongUser {
				loggedOut = true
			}
			if o.judged() {
				judged++
				if o == Kept {
					kept++
				}
			}
			if r.Status != 0 {
				s.Latency.Record(r.Latency)
			}
			if r.Node != "" {
				s.PerNode[r.Node]++
				if cut <= 0 || r.At < cut {
					s.PerNodeBefore[r.Node]++
				}
			}
			if s.Timeline != nil {
				w := int(r.At / window)
				w = min(max(w, 0), len(s.Timeline)-1)
				s.Timeline[w].add(o)
			}
		}
		if loggedOut {
			s.UsersLoggedOut++
		}
		if judged > 0 && kept == judged {
			s.UsersAllKept++
		}
	}
	s.KeptRatio = s.Tally.KeptRatio()
	for i := range s.Timeline {
		s.Timeline[i].KeptRatio = s.Timeline[i].Tally.KeptRatio()
	}
	return s
}

// LoadMaxOverMean returns the busiest node's requests over the mean of
// every listed node's (a node of nodes missing from perNode served none;
// a node in perNode but not in nodes counts too). 1 is a perfect spread;
// N means one node of N took everything. It returns 0 when no node served
// a request.
func LoadMaxOverMean(perNode map[string]int, nodes []string) float64 {
	ids := slices.Clone(nodes)
	for id := range perNode {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	total, most := 0, 0
	for _, id := range ids {
		n := perNode[id]
		total += n
		most = max(most, n)
	}
	if total == 0 {
		return 0
	}
	return float64(most) / (float64(total) / float64(len(ids)))
}
