package deploy_test

import (
	"fmt"
	"net/http"
	"testing"
)

// failoverCheck names what pins a user to a node behind one balancer
// configuration, for the checks that it did so.
type failoverCheck struct {
	// PinCookie is the cookie the balancer inserts, whose value must name
	// the serving node before and after the kill ("" when the balancer
	// inserts none).
	PinCookie string
}

// checkLoginSurvivesNodeKill is the story every balancer configuration is
// tested with: a user logs in through the balancer, keeps reaching one node
// (the configuration's stickiness), makes an acknowledged write, and then
// that node is killed with SIGKILL. The very next requests must find the
// user logged in, with the write, on another node, with no error in
// between; after that the user sticks to the new node.
func checkLoginSurvivesNodeKill(t *testing.T, bal *balancer, nodes *nodeSet, fc failoverCheck) {
	t.Helper()
	c := newClient(t, bal.URL)

	if got := c.call(http.MethodGet, "/api/me", nil, http.StatusUnauthorized); got.Error == "" {
		t.Fatalf("anonymous GET /api/me: want an error message, got %+v", got)
	}
	login := c.call(http.MethodPost, "/login", map[string]string{"username": "alice", "password": "roam"}, http.StatusOK)
	if login.User != "alice" {
		t.Fatalf("login answered %+v, want user alice", login)
	}
	if c.cookie("roam_session") == "" {
		t.Fatal("no roam_session cookie after login: the balancer dropped Set-Cookie")
	}

	// The configuration's stickiness: every request now reaches one node.
	pinned := c.call(http.MethodGet, "/api/me", nil, http.StatusOK).Node
	for i := range 5 {
		got := c.call(http.MethodGet, "/api/me", nil, http.StatusOK)
		if got.User != "alice" || got.Node != pinned {
			t.Fatalf("request %d after login: %+v, want user alice on %s (the node the user is pinned to)", i+2, got, pinned)
		}
	}
	if w := c.call(http.MethodPost, "/api/counter", nil, http.StatusOK); w.Counter != 1 || w.Node != pinned {
		t.Fatalf("POST /api/counter: %+v, want counter 1 on %s", w, pinned)
	}
	if fc.PinCookie != "" {
		if v := c.cookie(fc.PinCookie); v != pinned {
			t.Fatalf("%s cookie is %q, want %q (the node that serves the user)", fc.PinCookie, v, pinned)
		}
	}

	victim := nodes.byID(t, pinned)
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}

	// No error, no logout, no lost write: the first request after the
	// crash already lands on a live node that has the session.
	after := c.call(http.MethodGet, "/api/me", nil, http.StatusOK)
	if after.User != "alice" || after.Counter != 1 || after.Node == pinned {
		t.Fatalf("first request after killing %s: %+v, want alice with counter 1 on another node", pinned, after)
	}
	if w := c.call(http.MethodPost, "/api/counter", nil, http.StatusOK); w.Counter != 2 {
		t.Fatalf("POST /api/counter after the kill: %+v, want counter 2", w)
	}
	// Re-pinned: the user now stays on one live node.
	repinned := c.call(http.MethodGet, "/api/me", nil, http.StatusOK).Node
	for i := range 3 {
		got := c.call(http.MethodGet, "/api/me", nil, http.StatusOK)
		if got.User != "alice" || got.Counter != 2 || got.Node != repinned || got.Node == pinned {
			t.Fatalf("request %d after the kill: %+v, want alice with counter 2 on %s", i+2, got, repinned)
		}
	}
	if fc.PinCookie != "" {
		if v := c.cookie(fc.PinCookie); v != repinned {
			t.Fatalf("%s cookie after the kill is %q, want %q: the balancer did not re-pin", fc.PinCookie, v, repinned)
		}
	}

	// Logout through the balancer ends the session everywhere.
	c.call(http.MethodPost, "/logout", nil, http.StatusOK)
	if got := c.call(http.MethodGet, "/api/me", nil, http.StatusUnauthorized); got.User != "" {
		t.Fatalf("after logout: %+v, want 401", got)
	}
	t.Log(fmt.Sprintf("pinned to %s, killed it, re-pinned to %s", pinned, repinned))
}
