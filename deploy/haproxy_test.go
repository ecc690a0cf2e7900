package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testserver"
)

// startHAProxy runs the real haproxy with the shipped configuration file
// cfg, its addresses rewritten to the nodes' and a free port, in the
// foreground (-db) so it stays the child the test stops by PID. The file
// is checked with haproxy -c first, so a syntax error fails with
// HAProxy's own message.
func startHAProxy(t *testing.T, cfg string, nodes *nodeSet) *balancer {
	t.Helper()
	bin := testserver.Require(t, "haproxy", "haproxy")
	dir := t.TempDir()
	return startBalancer(t, func(listen string) proc.Spec {
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(rewriteConfig(t, cfg, exampleAddrs(listen, nodes))), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c %s: %v\n%s", cfg, err, out)
		}
		return proc.Spec{Name: "haproxy", Path: bin, Args: []string{"-f", path, "-db"}, Dir: dir}
	})
}

// TestHAProxyCookieInsert runs deploy/haproxy/cookie.cfg: HAProxy pins the
// user with its SERVERID cookie, and when the pinned node is killed,
// redispatch takes the user to another node, where the shared store has
// the session, and the cookie is rewritten to pin the user there.
func TestHAProxyCookieInsert(t *testing.T) {
	nodes := startNodes(t, 3, sharedStore(t))
	bal := startHAProxy(t, "haproxy/cookie.cfg", nodes)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{PinCookie: "SERVERID"})
}

// TestHAProxyConsistentHash runs deploy/haproxy/hash.cfg: the session
// cookie's value picks the node on a consistent hash ring; killing that
// node moves the session to the next one, which finds it in the store.
func TestHAProxyConsistentHash(t *testing.T) {
	nodes := startNodes(t, 3, sharedStore(t))
	bal := startHAProxy(t, "haproxy/hash.cfg", nodes)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{})
}
