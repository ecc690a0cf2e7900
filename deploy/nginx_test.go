package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testserver"
)

// nginxMain is the main configuration the test wraps around a shipped
// server file, as Debian's /etc/nginx/nginx.conf wraps conf.d/*.conf: it
// keeps the pid file, logs and temporary files in the test's directory.
const nginxMain = `worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/roam.conf;
}
`

// startNginx runs the real nginx with the shipped server file conf, its
// addresses rewritten to the nodes' and a free port, in the foreground
// (daemon off) so the master stays the child the test stops by PID; its
// workers are in the master's process group and go with it. The
// configuration is checked with nginx -t first.
func startNginx(t *testing.T, conf string, nodes *nodeSet) *balancer {
	t.Helper()
	bin := testserver.Require(t, "nginx", "nginx")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), fmt.Appendf(nil, nginxMain, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	// -e: the error log before the configuration is read (the compiled-in
	// default may be unwritable); -p: the prefix for any relative path.
	args := []string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"}
	return startBalancer(t, func(listen string) proc.Spec {
		if err := os.WriteFile(filepath.Join(dir, "roam.conf"), []byte(rewriteConfig(t, conf, exampleAddrs(listen, nodes))), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nginx -t with %s: %v\n%s", conf, err, out)
		}
		return proc.Spec{Name: "nginx", Path: bin, Args: args, Dir: dir}
	})
}

// TestNginxConsistentHash runs deploy/nginx/hash.conf: hash
// $cookie_roam_session consistent pins the user by the session cookie, and
// proxy_next_upstream takes the user to another node, which has the
// session, when the pinned one is killed.
func TestNginxConsistentHash(t *testing.T) {
	nodes := startNodes(t, 3, sharedStore(t))
	bal := startNginx(t, "nginx/hash.conf", nodes)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{})
}

// TestNginxIPHash runs deploy/nginx/ip_hash.conf: every request of the
// test's client (one loopback address) goes to one node until it is
// killed, then to the next one, which has the session.
func TestNginxIPHash(t *testing.T) {
	nodes := startNodes(t, 3, sharedStore(t))
	bal := startNginx(t, "nginx/ip_hash.conf", nodes)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{})
}
