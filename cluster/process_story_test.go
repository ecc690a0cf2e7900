package cluster

import (
	"net/http"
	"strconv"
	"testing"
)

// Read-your-writes: in sync mode a login acknowledged by one node is
// visible on every node on the very next request (Tomcat's DeltaManager in
// its default async mode showed it on a peer for about 75% of fresh logins).
func TestProcessLoginVisibleOnEveryNodeAtOnce(t *testing.T) {
	for _, mode := range []string{"backup", "all"} {
		t.Run(mode, func(t *testing.T) {
			c := newPCluster(t, mode, 3)
			ids := c.liveIDs()
			for i := range 100 {
				via := ids[i%len(ids)]
				name := "fresh" + strconv.Itoa(i)
				code, body, err := call("POST", c.base(via)+"/login", "", map[string]string{"username": name, "password": "roam"})
				cookie, _ := body["_cookie"].(string)
				if err != nil || code != http.StatusOK || cookie == "" {
					t.Fatalf("login %d via %s: HTTP %d %v %v", i, via, code, body, err)
				}
				for _, id := range ids {
					code, body, err := call("GET", c.base(id)+"/api/me", cookie, nil)
					if err != nil || code != http.StatusOK || body["user"] != name {
						t.Fatalf("login %d acknowledged by %s, next request via %s: HTTP %d %v %v, want the user", i, via, id, code, body, err)
					}
				}
			}
		})
	}
}

// A node started with the wrong secret stays alone: it cannot join, and
// the cluster never counts it.
func TestProcessNodeWithWrongSecretCannotJoin(t *testing.T) {
	c := newPCluster(t, "backup", 3)
	c.secret = "not the secret"
	c.start("n4") // ready alone, after its start-up grace
	if got := c.readyMembers("n4"); got != 1 {
		t.Errorf("node with the wrong secret counts %d ready members, want 1 (itself)", got)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if got := c.readyMembers(id); got != 3 {
			t.Errorf("%s counts %d ready members after a node with the wrong secret tried to join, want 3", id, got)
		}
	}
}
