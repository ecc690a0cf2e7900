package bench

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/launch"
	"github.com/roamsession/roam/internal/testbin"
)

// The end-to-end tests run real roam node processes behind a real
// balancer, from the binary internal/testbin builds (or $ROAM_BINARY).
func TestMain(m *testing.M) { testbin.Main(m) }

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// runBench runs opts against real processes and fails the test when the
// run cannot be made. Run itself stops everything it started. A store
// server that is not installed skips the test, except under CI, where
// every server must be there.
func runBench(t *testing.T, opts Options) *Result {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Launcher = ProcessLauncher{Binary: testbin.Roam(t), Logger: log}
	opts.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), opts.Duration+60*time.Second)
	defer cancel()
	r, err := Run(ctx, opts)
	if errors.Is(err, launch.ErrServerMissing) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%s: %d requests, kept %.3f, users logged out %d/%d, lost %d/%d, 5xx %d, other %d, per node %v",
		r.Strategy, r.Requests, r.SessionKeptRatio, r.UsersLoggedOut, r.Users, r.LostIncrements, r.AckedIncrements,
		r.Errors5xx, r.ErrorsOther, r.RequestsPerNode)
	return r
}

func TestNoneKeepsAboutOneSessionInN(t *testing.T) {
	r := runBench(t, Options{Strategy: "none", Nodes: 3, Users: 20, Duration: 3 * time.Second, Think: 50 * time.Millisecond, Seed: 1})
	if r.SessionRequests < 300 {
		t.Fatalf("only %d session requests were judged: too few to measure", r.SessionRequests)
	}
	if math.Abs(r.SessionKeptRatio-1.0/3) > 0.12 {
		t.Errorf("kept ratio %.3f, want about 1/3 with three nodes behind round robin", r.SessionKeptRatio)
	}
	if r.UsersLoggedOut < r.Users*3/4 {
		t.Errorf("%d of %d users were logged out at least once, want nearly all", r.UsersLoggedOut, r.Users)
	}
	if r.WrongUser != 0 || r.Errors5xx != 0 || r.ErrorsOther != 0 {
		t.Errorf("wrong user %d, 5xx %d, other errors %d; want none", r.WrongUser, r.Errors5xx, r.ErrorsOther)
	}
	if len(r.RequestsPerNode) != 3 || r.LoadMaxOverMean > 1.2 {
		t.Errorf("requests per node %v (max/mean %.2f): round robin should spread over all three", r.RequestsPerNode, r.LoadMaxOverMean)
	}
	if len(r.RSSBytesPerNode) != 3 || r.RSSMeanBytes < 1<<20 {
		t.Errorf("RSS per node %v: want a plausible RSS for each of three nodes", r.RSSBytesPerNode)
	}
	if r.StoreRoundTrips == 0 {
		t.Error("no store calls were read from the nodes' /metrics")
	}
}

func TestStickyKillLogsOutTheKilledNodesUsers(t *testing.T) {
	const killAt = 1500 * time.Millisecond
	r := runBench(t, Options{
		Strategy: "sticky", Nodes: 3, Users: 24, Duration: 4 * time.Second, Think: 50 * time.Millisecond, Seed: 2,
		Faults: []Fault{{Kind: FaultKill, Node: "n1", At: killAt}},
	})
	if len(r.FaultEvents) != 1 || r.FaultEvents[0].Error != "" {
		t.Fatalf("fault events %+v, want one kill that worked", r.FaultEvents)
	}
	// Under load the kill may start late: judge by when it really ran.
	began := time.Duration(r.FaultEvents[0].AtS * float64(time.Second))
	ended := time.Duration(r.FaultEvents[0].DoneS * float64(time.Second))
	if ended > 3500*time.Millisecond {
		t.Fatalf("the kill ended at %v, too late in a 4s run to judge what followed", ended)
	}
	onN1 := 0
	for u, recs := range r.Records() {
		v := Judge(recs)
		// home is the node that last kept the user's session in an answer
		// that came back before the kill began; "after" is every answer
		// that came back once it had begun.
		home, loggedOutAfter, loggedOutBefore, askedAfter := "", false, false, false
		for i, rec := range recs {
			switch {
			case rec.At+rec.Latency < began:
				if rec.Status == 200 {
					home = rec.Node
				}
				loggedOutBefore = loggedOutBefore || v.Outcomes[i] == LoggedOut
			default: // answered once the kill had begun
				askedAfter = askedAfter || rec.Kind != KindLogin
				loggedOutAfter = loggedOutAfter || v.Outcomes[i] == LoggedOut
			}
		}
		if loggedOutBefore {
			t.Errorf("user %d was logged out before the kill: the cookie pins it to %s", u, home)
		}
		switch {
		case home == "n1":
			onN1++
			if askedAfter && !loggedOutAfter {
				t.Errorf("user %d was pinned to the killed n1 but stayed logged in", u)
				for i, rec := range recs {
					t.Logf("  %v: %s %d from %s at %v in %v", v.Outcomes[i], rec.Kind, rec.Status, rec.Node, rec.At, rec.Latency)
				}
			}
		case home != "" && loggedOutAfter:
			t.Errorf("user %d was pinned to %s, which lived, but was logged out", u, home)
		}
	}
	if onN1 == 0 || onN1 == r.Users {
		t.Fatalf("%d of %d users were pinned to n1: the test needs some on it and some elsewhere", onN1, r.Users)
	}
	if r.UsersLoggedOut > onN1 {
		t.Errorf("%d users were logged out, but only %d were on n1", r.UsersLoggedOut, onN1)
	}
	if r.SessionKeptRatio < 0.8 || r.SessionKeptRatio == 1 {
		t.Errorf("kept ratio %.3f: want nearly all kept, but not all (n1's users lost theirs)", r.SessionKeptRatio)
	}
	if r.LostIncrements == 0 {
		t.Error("no lost increments: n1's users' counters died with it")
	}
}

func TestRedisRestartedEmptyLogsEveryoneOut(t *testing.T) {
	r := runBench(t, Options{
		Strategy: "redis", Nodes: 2, Users: 12, Duration: 4 * time.Second, Think: 50 * time.Millisecond, Seed: 3,
		Faults:        []Fault{{Kind: FaultKillStore, At: time.Second}},
		StoreDowntime: time.Second,
	})
	if len(r.FaultEvents) != 2 {
		t.Fatalf("fault events %+v, want the kill and the restore", r.FaultEvents)
	}
	for _, ev := range r.FaultEvents {
		if ev.Error != "" {
			t.Fatalf("%s failed: %s", ev.Fault, ev.Error)
		}
	}
	if *r.KeptBeforeFault != 1 {
		t.Errorf("kept %.3f before the store died, want 1", *r.KeptBeforeFault)
	}
	// The Redis has no persistence: it comes back empty, and every user
	// who asks after that finds itself logged out, its counter gone.
	if r.UsersLoggedOut != r.Users {
		t.Errorf("%d of %d users were logged out, want all", r.UsersLoggedOut, r.Users)
	}
	if r.LostIncrements == 0 || r.Errors5xx == 0 {
		t.Errorf("lost increments %d, 5xx %d: want both (the outage answers 503, the restart loses the counters)", r.LostIncrements, r.Errors5xx)
	}
	if r.WrongUser != 0 || r.Stale != 0 {
		t.Errorf("wrong user %d, stale %d: want none", r.WrongUser, r.Stale)
	}
}
