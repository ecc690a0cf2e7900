package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Shorthands for recorded requests of one user.
func login(status int) Record { return Record{Kind: KindLogin, Status: status, Counter: -1} }
func read(status, counter int) Record {
	return Record{Kind: KindRead, Status: status, Counter: counter}
}
func write(status, counter int) Record {
	return Record{Kind: KindWrite, Status: status, Counter: counter}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name  string
		recs  []Record
		want  []Outcome
		lost  int
		acked int
	}{
		{
			name:  "a counter that continues is kept",
			recs:  []Record{login(200), write(200, 1), read(200, 1), write(200, 2), write(200, 3), read(200, 3)},
			want:  []Outcome{Login, Kept, Kept, Kept, Kept, Kept},
			acked: 3,
		},
		{
			name:  "a logout loses every increment acknowledged since the login",
			recs:  []Record{login(200), write(200, 1), write(200, 2), read(401, -1), login(200), write(200, 1), read(200, 1)},
			want:  []Outcome{Login, Kept, Kept, LoggedOut, Login, Kept, Kept},
			lost:  2,
			acked: 3,
		},
		{
			name:  "a read behind the acknowledged counter is stale and counts each loss once",
			recs:  []Record{login(200), write(200, 1), write(200, 2), write(200, 3), read(200, 1), read(200, 1), write(200, 2)},
			want:  []Outcome{Login, Kept, Kept, Kept, Stale, Kept, Kept},
			lost:  2,
			acked: 4,
		},
		{
			name:  "a write that does not continue the counter is stale",
			recs:  []Record{login(200), write(200, 1), write(200, 2), write(200, 1)},
			want:  []Outcome{Login, Kept, Kept, Stale},
			lost:  2,
			acked: 3,
		},
		{
			name:  "failures acknowledge nothing and lose nothing",
			recs:  []Record{login(200), write(200, 1), write(502, -1), {Kind: KindRead, Status: 0, Counter: -1}, read(503, -1), read(200, 1)},
			want:  []Outcome{Login, Kept, Error5xx, ErrorOther, Error5xx, Kept},
			acked: 1,
		},
		{
			name:  "an unacknowledged increment that did land is no loss",
			recs:  []Record{login(200), write(200, 1), write(502, -1), read(200, 2), write(200, 3)},
			want:  []Outcome{Login, Kept, Error5xx, Kept, Kept},
			acked: 2,
		},
		{
			name:  "another user's session is a logout",
			recs:  []Record{login(200), write(200, 1), {Kind: KindRead, Status: 200, Counter: 9, OtherUser: true}},
			want:  []Outcome{Login, Kept, WrongUser},
			lost:  1,
			acked: 1,
		},
		{
			name: "a failed login and an unexpected status are errors",
			recs: []Record{login(401), login(503), login(200), read(415, -1), read(200, 0)},
			want: []Outcome{ErrorOther, Error5xx, Login, ErrorOther, Kept},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.recs)
			if !slices.Equal(v.Outcomes, tt.want) {
				t.Errorf("outcomes = %v, want %v", v.Outcomes, tt.want)
			}
			if v.Lost != tt.lost || v.Acked != tt.acked {
				t.Errorf("lost, acked = %d, %d; want %d, %d", v.Lost, v.Acked, tt.lost, tt.acked)
			}
		})
	}
}

// noneLike records what `none` with three nodes does: each user's session
// lives on the node of its login, and round robin over many interleaved
// users sends each request to any node alike, so a third of them there.
func noneLike(users, requests int) [][]Record {
	nodes := []string{"n1", "n2", "n3"}
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([][]Record, users)
	for u := range out {
		at := time.Duration(0)
		next := func(r Record) Record {
			r.User, r.At, r.Node, r.Latency = int32(u), at, nodes[rng.IntN(3)], time.Millisecond
			at += 100 * time.Millisecond
			return r
		}
		home := ""
		loggedIn := false
		for range requests {
			if !loggedIn {
				r := next(login(200))
				home, loggedIn = r.Node, true
				out[u] = append(out[u], r)
				continue
			}
			r := next(read(200, 0))
			if r.Node != home {
				r.Status, r.Counter = 401, -1
				loggedIn = false
			}
			out[u] = append(out[u], r)
		}
	}
	return out
}

func TestSummarizeKeptRatioOfNone(t *testing.T) {
	s := Summarize(noneLike(30, 60), time.Second, 6*time.Second, 0)
	if s.Judged() == 0 {
		t.Fatal("nothing judged")
	}
	if got := s.KeptRatio; math.Abs(got-1.0/3) > 0.05 {
		t.Errorf("kept ratio = %.3f, want about 1/3", got)
	}
	if s.UsersLoggedOut != 30 || s.UsersAllKept != 0 {
		t.Errorf("users logged out, all kept = %d, %d; want 30, 0", s.UsersLoggedOut, s.UsersAllKept)
	}
	if s.Kept+s.LoggedOut+s.Logins != s.Requests {
		t.Errorf("kept %d + logged out %d + logins %d != requests %d", s.Kept, s.LoggedOut, s.Logins, s.Requests)
	}
	if got := LoadMaxOverMean(s.PerNode, []string{"n1", "n2", "n3"}); math.Abs(got-1) > 0.05 {
		t.Errorf("round robin load max/mean = %.3f, want 1", got)
	}
	if len(s.Timeline) != 6 {
		t.Fatalf("timeline has %d windows, want 6", len(s.Timeline))
	}
	total := 0
	for _, w := range s.Timeline {
		total += w.Requests
		if w.Judged() > 0 && math.Abs(w.KeptRatio-1.0/3) > 0.1 {
			t.Errorf("window at %gs kept %.3f, want about 1/3", w.StartS, w.KeptRatio)
		}
	}
	if total != s.Requests {
		t.Errorf("timeline holds %d requests, the run %d", total, s.Requests)
	}
	if s.Latency.Count() != uint64(s.Requests) {
		t.Errorf("latency histogram holds %d, want %d", s.Latency.Count(), s.Requests)
	}
}

func TestSummarizeCountsPerUserAndBeforeTheCut(t *testing.T) {
	at := func(r Record, ms int, node string) Record {
		r.At, r.Node = time.Duration(ms)*time.Millisecond, node
		return r
	}
	byUser := [][]Record{
		{at(login(200), 0, "n1"), at(write(200, 1), 100, "n1"), at(read(200, 1), 2000, "n2")},
		{at(login(200), 0, "n2"), at(write(200, 1), 100, "n2"), at(read(401, -1), 2000, "n1"), at(login(200), 2100, "n1")},
		{at(login(200), 0, "n1"), {Kind: KindRead, At: 100 * time.Millisecond, Counter: -1}}, // no answer: no node, no verdict
	}
	s := Summarize(byUser, time.Second, 3*time.Second, time.Second)
	if s.UsersLoggedOut != 1 || s.UsersAllKept != 1 {
		t.Errorf("users logged out, all kept = %d, %d; want 1, 1", s.UsersLoggedOut, s.UsersAllKept)
	}
	if s.Lost != 1 || s.Acked != 2 {
		t.Errorf("lost, acked = %d, %d; want 1, 2", s.Lost, s.Acked)
	}
	if s.ErrorsOther != 1 || s.Latency.Count() != 8 {
		t.Errorf("errors other = %d, latencies = %d; want 1, 8", s.ErrorsOther, s.Latency.Count())
	}
	want := map[string]int{"n1": 3, "n2": 2}
	for id, n := range want {
		if s.PerNodeBefore[id] != n {
			t.Errorf("before the cut %s served %d, want %d", id, s.PerNodeBefore[id], n)
		}
	}
	if s.PerNode["n1"] != 5 || s.PerNode["n2"] != 3 {
		t.Errorf("per node = %v, want n1:5 n2:3", s.PerNode)
	}
	if s.Before.KeptRatio() != 1 || s.After.KeptRatio() != 0.5 || s.Before.Requests+s.After.Requests != s.Requests {
		t.Errorf("kept before, after the cut = %v, %v (of %d + %d requests); want 1, 0.5 of %d",
			s.Before.KeptRatio(), s.After.KeptRatio(), s.Before.Requests, s.After.Requests, s.Requests)
	}
	if s.Statuses[200] != 7 || s.Statuses[401] != 1 || s.Statuses[0] != 1 {
		t.Errorf("statuses = %v, want 200:7 401:1 0:1", s.Statuses)
	}
	if got := s.Timeline[2].KeptRatio; got != 0.5 {
		t.Errorf("window at 2s kept %v, want 0.5", got)
	}
}

func TestKeptRatioWithNothingJudgedIsOne(t *testing.T) {
	s := Summarize([][]Record{{login(200), read(502, -1)}}, 0, 0, 0)
	if s.KeptRatio != 1 || s.Timeline != nil {
		t.Errorf("kept ratio %v, timeline %v; want 1 and none", s.KeptRatio, s.Timeline)
	}
}

func TestLoadMaxOverMean(t *testing.T) {
	tests := []struct {
		name    string
		perNode map[string]int
		nodes   []string
		want    float64
	}{
		{"even", map[string]int{"n1": 10, "n2": 10, "n3": 10}, []string{"n1", "n2", "n3"}, 1},
		{"one node takes everything", map[string]int{"n2": 30}, []string{"n1", "n2", "n3"}, 3},
		{"a node missing from the list still counts", map[string]int{"n1": 10, "n2": 10, "n4": 40}, []string{"n1", "n2"}, 2},
		{"skewed", map[string]int{"n1": 20, "n2": 10, "n3": 0}, []string{"n1", "n2", "n3"}, 2},
		{"no requests", map[string]int{}, []string{"n1"}, 0},
		{"no nodes", nil, nil, 0},
	}
	for _, tt := range tests {
		if got := LoadMaxOverMean(tt.perNode, tt.nodes); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: LoadMaxOverMean = %v, want %v", tt.name, got, tt.want)
		}
	}
}
