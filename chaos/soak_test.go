package chaos

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// Environment of TestSoak (scripts/soak.sh sets it).
const (
	envSoakDuration  = "ROAM_SOAK_DURATION"   // how long; the test is skipped without it
	envSoakOut       = "ROAM_SOAK_OUT"        // the CSV of windows; soak.csv in the working directory by default
	envSoakKillEvery = "ROAM_SOAK_KILL_EVERY" // SIGKILL one node this often; 2m30s by default
	envSoakUsers     = "ROAM_SOAK_USERS"      // how many users; 60 by default
	envSoakWindow    = "ROAM_SOAK_WINDOW"     // the width of one row of the CSV; 10s by default
)

func durationEnv(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// TestSoak runs the backup strategy under a steady load for
// ROAM_SOAK_DURATION, killing a node (in turn, each started again a few
// seconds later) every ROAM_SOAK_KILL_EVERY, and writes one CSV row per
// window: the load's throughput, latency and outcomes, and each node's
// heap, RSS and goroutines. At the end it checks the chaos suite's
// invariants. It is not part of make test or make chaos: scripts/soak.sh
// runs it.
func TestSoak(t *testing.T) {
	total := durationEnv(t, envSoakDuration, 0)
	if total == 0 {
		t.Skipf("soak test: set %s (scripts/soak.sh does)", envSoakDuration)
	}
	killEvery := durationEnv(t, envSoakKillEvery, 150*time.Second)
	window := durationEnv(t, envSoakWindow, 10*time.Second)
	users := 60
	if v := os.Getenv(envSoakUsers); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q", envSoakUsers, v)
		}
		users = n
	}
	out := os.Getenv(envSoakOut)
	if out == "" {
		out = "soak.csv"
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)

	seed := seed(t)
	dir := logDir(t)
	cl := startCluster(t, Options{Strategy: "backup", LogDir: dir})
	ids := cl.NodeIDs()
	header := []string{"t_s", "fault", "rps", "ok", "unauthorized", "errors", "p50_ms", "p99_ms", "max_ms"}
	for _, id := range ids {
		header = append(header, id+"_heap_mib", id+"_rss_mib", id+"_goroutines")
	}
	w.Write(header)

	// 100 ms think time per user: 60 users ask about 600 requests a second
	// whatever the cluster does, which is what keeps the rate steady.
	load := StartLoad(cl, LoadOptions{Users: users, Think: 100 * time.Millisecond, Seed: seed})
	t.Cleanup(func() { load.Stop() })
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = proc.Poll(wctx, func(context.Context) error {
		if n := load.LoggedIn(); n < users {
			return fmt.Errorf("%d of %d users logged in", n, users)
		}
		return nil
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	load.TakeWindow()
	base, err := cl.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	end := start.Add(total)
	nextKill := start.Add(killEvery)
	victim := 0
	var kills, maxP99 int
	tick := time.NewTicker(window)
	defer tick.Stop()
	peak := map[string]Usage{}
	last := time.Now()
	for now := range tick.C {
		fault := ""
		if now.After(nextKill) && now.Before(end.Add(-killEvery/2)) {
			id := ids[victim%len(ids)]
			victim++
			fault = "kill " + id
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			// Down for 3 s, then started again: a supervisor's restart.
			err := cl.Inject(fctx, Fault{Kind: FaultKill, Node: id, Hold: 3 * time.Second}, nil, time.Minute)
			cancel()
			if err != nil {
				t.Errorf("at %v: %v", now.Sub(start).Round(time.Second), err)
			}
			kills++
			nextKill = nextKill.Add(killEvery)
		}
		win := load.TakeWindow()
		// A window with a kill lasts longer than the tick: Inject waited
		// for the node to come back inside it.
		taken := time.Now()
		secs := taken.Sub(last).Seconds()
		last = taken
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		use, _ := cl.Usage(uctx)
		cancel()
		n := win.OK + win.Unauthorized + win.Error
		p99 := win.Latency.Quantile(0.99)
		maxP99 = max(maxP99, int(p99.Milliseconds()))
		row := []string{
			strconv.FormatFloat(now.Sub(start).Seconds(), 'f', 0, 64), fault,
			strconv.FormatFloat(float64(n)/secs, 'f', 0, 64),
			strconv.FormatInt(win.OK, 10), strconv.FormatInt(win.Unauthorized, 10), strconv.FormatInt(win.Error, 10),
			ms(win.Latency.Quantile(0.5)), ms(p99), ms(win.Latency.Max()),
		}
		for _, id := range ids {
			u := use[id]
			row = append(row, mib(u.HeapInuse), mib(u.RSS), strconv.FormatFloat(u.Goroutines, 'f', 0, 64))
			if u.RSS > peak[id].RSS {
				peak[id] = u
			}
		}
		w.Write(row)
		w.Flush()
		if !now.Before(end) {
			break
		}
	}

	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := cl.WaitReady(rctx); err != nil {
		t.Error(err)
	}
	cancel()
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	final, err := cl.WaitUsageBack(mctx, base)
	cancel()
	if err != nil {
		t.Error(err)
	}
	for _, id := range ids {
		t.Logf("%s: baseline %v; peak rss %.1f MiB; end %v", id, base[id], peak[id].RSS/(1<<20), final[id])
	}
	rep := load.Stop()
	s := rep.Summary
	t.Logf("soak: %v, %d kills, %d requests (%.0f/s); kept %d, logged out %d, stale %d, wrong user %d; %d 5xx, %d other errors; "+
		"%d increments acknowledged, %d lost; p50 %v p99 %v max %v; worst window p99 %d ms; CSV in %s",
		total, kills, s.Requests, float64(s.Requests)/rep.Duration.Seconds(), s.Kept, s.LoggedOut, s.Stale, s.WrongUser,
		s.Errors5xx, s.ErrorsOther, s.Acked, s.Lost, s.Latency.Quantile(0.5), s.Latency.Quantile(0.99), s.Latency.Max(), maxP99, out)
	for _, v := range rep.Violations[:min(20, len(rep.Violations))] {
		t.Errorf("violation: %v", v)
	}
	if s.WrongUser > 0 || s.Lost > 0 || s.LoggedOut > 0 {
		t.Errorf("backup with single kills: %d wrong user, %d lost, %d logged out; want none", s.WrongUser, s.Lost, s.LoggedOut)
	}
	checkNoIDsInLogs(t, dir, load.IssuedIDs())
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cl.VerifyDead(dctx, rep.Dead, 200); err != nil {
		t.Error(err)
	}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}
func mib(b float64) string { return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) }
