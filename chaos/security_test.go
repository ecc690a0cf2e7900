package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/lb"
	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// client is a test's HTTP client for one user: no cookie jar (the tests
// hold the session id themselves), no redirects.
func newClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// call sends method path to base with the session id (when not "") and
// returns the status, the JSON body decoded into a map, and the session id
// the response set (nil when it set none; "" when it cleared it).
func call(t *testing.T, c *http.Client, method, base, path, id string, body any) (int, map[string]any, *string) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if id != "" {
		req.Header.Set("Cookie", sessionCookie+"="+id)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	var set *string
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			v := ck.Value
			if ck.MaxAge < 0 {
				v = ""
			}
			set = &v
		}
	}
	return resp.StatusCode, m, set
}

// login logs user in through base presenting id and returns the new id.
func login(t *testing.T, c *http.Client, base, user, id string) string {
	t.Helper()
	code, body, set := call(t, c, http.MethodPost, base, "/login", id, map[string]string{"username": user, "password": "roam"})
	if code != http.StatusOK || set == nil || *set == "" || body["user"] != user {
		t.Fatalf("login %s: %d %v, cookie %v", user, code, body, set)
	}
	return *set
}

// everyNode calls GET /api/me with id on every node directly and returns
// the answers "node: status user".
func everyNode(t *testing.T, cl *Cluster, id string) map[string]string {
	t.Helper()
	c := newClient()
	out := map[string]string{}
	for _, n := range cl.Nodes() {
		code, body, _ := call(t, c, http.MethodGet, n.URL, "/api/me", id, nil)
		out[n.ID] = fmt.Sprintf("%d %v", code, body["user"])
	}
	return out
}

func expectRefusedEverywhere(t *testing.T, cl *Cluster, id, what string) {
	t.Helper()
	for node, got := range everyNode(t, cl, id) {
		if !strings.HasPrefix(got, "401 ") {
			t.Errorf("%s: node %s answered %s, want 401", what, node, got)
		}
	}
}

// TestLoginRenewsSessionID is the fixation test: whatever id the client
// brings to a login, a well-formed one it made up or a real one an
// attacker obtained by logging in himself, the login answers with a new
// id, and the id brought along is worth nothing afterwards on any node.
func TestLoginRenewsSessionID(t *testing.T) {
	cl := sharedCluster(t)
	c := newClient()

	planted := session.NewID() // well-formed, never issued
	victim := login(t, c, cl.URL(), "alice", planted)
	if victim == planted {
		t.Fatal("login kept a planted session id")
	}
	expectRefusedEverywhere(t, cl, planted, "planted id after the login")

	// The classic attack: the attacker logs in, plants his own session id
	// in the victim's browser, and waits for the victim to log in with it.
	attacker := login(t, c, cl.URL(), "mallory", "")
	victim = login(t, c, cl.URL(), "bob", attacker)
	if victim == attacker {
		t.Fatal("login kept the attacker's session id")
	}
	for node, got := range everyNode(t, cl, attacker) {
		if strings.Contains(got, "bob") {
			t.Errorf("node %s: the attacker's old id now reads as the victim: %s", node, got)
		} else if !strings.HasPrefix(got, "401 ") {
			t.Errorf("node %s: the id renewed away is still a session: %s", node, got)
		}
	}
	if code, body, _ := call(t, c, http.MethodGet, cl.URL(), "/api/me", victim, nil); code != http.StatusOK || body["user"] != "bob" {
		t.Errorf("the victim's new id: %d %v, want bob", code, body)
	}
}

// TestNoCrossUserSessionsUnderConcurrency runs many users at once, with
// no think time, through the balancer: every answer names its own user,
// no id is ever issued twice, no counter runs ahead of its user's
// increments.
func TestNoCrossUserSessionsUnderConcurrency(t *testing.T) {
	cl := sharedCluster(t)
	load := StartLoad(cl, LoadOptions{Users: 120, Think: -1, LogoutRatio: 0.05, Seed: 9})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Run until enough has happened: bounded by count and by time.
	err := proc.Poll(ctx, func(context.Context) error {
		if n := load.Requests(); n < 6000 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	rep := load.Stop()
	if err != nil && rep.Summary.Requests < 1000 {
		t.Fatalf("the load did not get going: %v", err)
	}
	s := rep.Summary
	t.Logf("%d users, %d requests, %d logins, %d logouts, %d kept, %d wrong user; p99 %v",
		rep.Users, s.Requests, s.Logins, rep.LogoutsAcked, s.Kept, s.WrongUser, s.Latency.Quantile(0.99))
	for _, v := range rep.Violations {
		t.Errorf("violation: %v", v)
	}
	if s.WrongUser > 0 || s.Lost > 0 || s.LoggedOut > 0 {
		t.Errorf("wrong user %d, lost %d, logged out %d: want none without faults", s.WrongUser, s.Lost, s.LoggedOut)
	}
	if s.Logins < rep.Users || rep.LogoutsAcked == 0 {
		t.Errorf("%d logins, %d logouts: the test did not log users in and out", s.Logins, rep.LogoutsAcked)
	}
}

// TestLoggedOutCookieNeverWorksAgainOnAnyNode logs out, then presents the
// old cookie to every node, before and after the session's primary is
// killed and started again (its tombstone must survive the crash and the
// state transfer of the restarted node).
func TestLoggedOutCookieNeverWorksAgainOnAnyNode(t *testing.T) {
	cl := sharedCluster(t)
	c := newClient()
	id := login(t, c, cl.URL(), "carol", "")
	for range 3 {
		if code, _, _ := call(t, c, http.MethodPost, cl.URL(), "/api/counter", id, nil); code != http.StatusOK {
			t.Fatalf("increment: %d", code)
		}
	}
	code, _, set := call(t, c, http.MethodPost, cl.URL(), "/logout", id, nil)
	if code != http.StatusOK || set == nil || *set != "" {
		t.Fatalf("logout: %d, cookie %v (want it cleared)", code, set)
	}
	expectRefusedEverywhere(t, cl, id, "right after the logout")

	primary := placement.Primary(id, cl.NodeIDs())
	if err := cl.Kill(primary); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Revive(ctx, primary); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	expectRefusedEverywhere(t, cl, id, "after the primary "+primary+" crashed and came back")
	// Through the balancer too. Its first request to a restarted node may
	// meet a keep-alive connection the crash broke, which it does not
	// retry for a POST (502): ask until a node gives its verdict.
	err := proc.Poll(ctx, func(context.Context) error {
		code, _, _ := call(t, c, http.MethodPost, cl.URL(), "/api/counter", id, nil)
		if code == http.StatusOK {
			t.Fatalf("a write with the logged-out id was accepted")
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	if err != nil {
		t.Errorf("a write with the logged-out id: %v, want 401", err)
	}
}

// TestLogoutWhilePrimaryIsAwayStaysLoggedOut: the session's primary
// disappears (frozen long enough to be declared dead, or cut off by a
// partition), the user logs out at the backup that took over, and the
// primary comes back holding its old, live copy. The logout must win.
// The chaos suite found this failing; see the report on issue 9.
func TestLogoutWhilePrimaryIsAwayStaysLoggedOut(t *testing.T) {
	buildRoam(t)
	for _, away := range []FaultKind{FaultFreeze, FaultIsolate} {
		t.Run(string(away), func(t *testing.T) {
			isolated := away == FaultIsolate
			if isolated && !longMode() {
				// The freeze variant shows the same fix without root, in
				// less time; make chaos runs this one.
				t.Skipf("partition variant: set %s=long", envMode)
			}
			if isolated && !isolation(t) {
				t.Skip("partitions need network namespaces")
			}
			cl := startCluster(t, Options{Strategy: "backup", Isolated: isolated})
			c := newClient()
			id := login(t, c, cl.URL(), "dave", "")
			if code, _, _ := call(t, c, http.MethodPost, cl.URL(), "/api/counter", id, nil); code != http.StatusOK {
				t.Fatalf("increment: %d", code)
			}
			ids := cl.NodeIDs()
			primary := placement.Primary(id, ids)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if isolated {
				if err := cl.Partition(ctx, []string{primary}, true); err != nil {
					t.Fatal(err)
				}
			} else if err := cl.Freeze(primary); err != nil {
				t.Fatal(err)
			}
			// Until the others have declared the primary dead and the
			// balancer has taken it out, the logout would only wait.
			err := proc.Poll(ctx, func(ctx context.Context) error {
				for _, n := range ids {
					if n == primary {
						continue
					}
					m, err := cl.Metrics(ctx, n)
					if err != nil {
						return err
					}
					if r := m.SumWith("roam_cluster_members", "state", "ready"); r != float64(len(ids)-1) {
						return fmt.Errorf("%s sees %v ready members", n, r)
					}
				}
				for _, s := range cl.lb.Nodes() {
					if s.ID == primary && s.State == lb.StateUp.String() {
						return fmt.Errorf("the balancer still sends to %s", primary)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			code, body, _ := call(t, c, http.MethodPost, cl.URL(), "/logout", id, nil)
			if code != http.StatusOK {
				t.Fatalf("logout while %s is away: %d %v", primary, code, body)
			}
			if code, _, _ := call(t, c, http.MethodGet, cl.URL(), "/api/me", id, nil); code != http.StatusUnauthorized {
				t.Fatalf("right after the logout: %d, want 401", code)
			}
			// The primary stays away for a few sync passes (SyncInterval,
			// 1 s), as it would through any real outage: long enough for
			// the nodes that took over to settle the logout among
			// themselves.
			time.Sleep(3 * time.Second)
			if isolated {
				err = cl.Heal(ctx)
			} else {
				err = cl.Thaw(primary)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			expectRefusedEverywhere(t, cl, id, "after the primary "+primary+" came back")
		})
	}
}
