package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testbin"
	"github.com/roamsession/roam/internal/testserver"
)

// unitFile is a systemd unit as key → values (a key may repeat), across
// sections; comments and blank lines dropped.
type unitFile map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not key=value", path, line)
		}
		u[k] = append(u[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("unit has %d %s= lines, want 1", len(u[key]), key)
	}
	return u[key][0]
}

// readEnvFile reads a systemd EnvironmentFile: KEY=value lines, comments
// and blank lines ignored, no quotes used.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(v, `"'`) {
			t.Fatalf("%s: line %q: want KEY=value without quotes", path, line)
		}
		env[k] = v
	}
	return env
}

var braced = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandExec expands an ExecStart line the way systemd does for what roam's
// units use: %i is the instance; a word that is exactly $VAR becomes the
// variable's value split at whitespace (zero or more arguments); ${VAR}
// inside a word is replaced by the value, the word staying one argument.
// A variable that env does not define fails the test: systemd would
// expand it to nothing, which is never what the unit meant.
func expandExec(t *testing.T, line, instance string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(line) {
		w = strings.ReplaceAll(w, "%i", instance)
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			v, ok := env[w[1:]]
			if !ok {
				t.Fatalf("ExecStart uses %s, which the environment does not set", w)
			}
			out = append(out, strings.Fields(v)...)
			continue
		}
		w = braced.ReplaceAllStringFunc(w, func(m string) string {
			v, ok := env[m[2:len(m)-1]]
			if !ok {
				t.Fatalf("ExecStart uses %s, which the environment does not set", m)
			}
			return v
		})
		out = append(out, w)
	}
	return out
}

// TestSystemdUnitsVerify runs systemd-analyze verify on both units (with
// ExecStart pointing at the built binary, which it checks exists): any
// unknown key or unparsable value is reported on its output and fails the
// test.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := testserver.Require(t, "systemd-analyze", "systemd")
	bin := testbin.Roam(t)
	dir := t.TempDir()
	for _, name := range []string{"roam-node@.service", "roam-lb.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/roam", bin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "./roam-node@n1.service", "./roam-lb.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// gossipPort returns a free loopback port whose next port is free too:
// without a peer= option the cluster store puts replication on gossip
// port + 1, as the shipped node.env relies on.
func gossipPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p, err := proc.FreePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free pair of consecutive loopback ports")
	return 0
}

// TestSystemdUnitsRunForReal runs what the units would run: three nodes
// from roam-node@.service with node.env, and a balancer from
// roam-lb.service with lb.yaml, each command line expanded as systemd
// would (instance, environment file, credentials directory), with only the
// addresses and /etc paths changed. The store is node.env's cluster:backup
// and the policy lb.yaml's owner; a login must survive the kill of its
// node, and systemctl reload's SIGHUP must reload lb.yaml.
func TestSystemdUnitsRunForReal(t *testing.T) {
	nodeUnit := readUnit(t, "systemd/roam-node@.service")
	lbUnit := readUnit(t, "systemd/roam-lb.service")
	if got := nodeUnit.one(t, "EnvironmentFile"); got != "/etc/roam/node-%i.env" {
		t.Fatalf("EnvironmentFile=%s; the test reads systemd/node.env in its place", got)
	}
	for _, c := range []struct {
		u    unitFile
		want string
	}{{nodeUnit, "cluster-secret:/etc/roam/cluster-secret"}, {lbUnit, "lb-secret:/etc/roam/lb-secret"}} {
		if got := c.u.one(t, "LoadCredential"); got != c.want {
			t.Fatalf("LoadCredential=%s, want %s", got, c.want)
		}
	}
	if got := lbUnit.one(t, "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
		t.Fatalf("ExecReload=%s; the test sends SIGHUP as that does", got)
	}

	// The credentials directory systemd would make for each service.
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "cluster-secret"), []byte("systemd-test-cluster-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "lb-secret"), []byte("systemd-test-lb-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// node.env is node n1's; each node gets it with its own addresses:
	// ROAM_LISTEN, its gossip address (127.0.0.1:7946 in the file) and a
	// peer to join (127.0.0.1:7956 in the file). n1 lists n2, which is not
	// up yet (seeds that do not answer are retried); n3 names n1 by a DNS
	// name, as a seed list of host names would.
	envFile := "systemd/node.env"
	shipped := readEnvFile(t, envFile)
	if shipped["ROAM_STORE"] != "cluster:backup" {
		t.Fatalf("%s: ROAM_STORE=%q; the test expects cluster:backup", envFile, shipped["ROAM_STORE"])
	}
	const n = 3
	gossip := make([]int, n)
	for i := range gossip {
		gossip[i] = gossipPort(t)
	}
	join := []string{
		fmt.Sprintf("127.0.0.1:%d", gossip[1]),
		fmt.Sprintf("127.0.0.1:%d", gossip[0]),
		fmt.Sprintf("localhost:%d", gossip[0]),
	}
	nodes := &nodeSet{}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		env := map[string]string{"CREDENTIALS_DIRECTORY": creds}
		for k, v := range shipped {
			env[k] = v
		}
		env["ROAM_LISTEN"] = "127.0.0.1:0"
		args := env["ROAM_NODE_ARGS"]
		for old, repl := range map[string]string{"127.0.0.1:7946": fmt.Sprintf("127.0.0.1:%d", gossip[i]), "127.0.0.1:7956": join[i]} {
			if strings.Count(args, old) != 1 {
				t.Fatalf("%s: ROAM_NODE_ARGS %q: want %s exactly once", envFile, args, old)
			}
			args = strings.Replace(args, old, repl, 1)
		}
		env["ROAM_NODE_ARGS"] = args
		argv := expandExec(t, nodeUnit.one(t, "ExecStart"), id, env)
		if argv[0] != "/usr/local/bin/roam" {
			t.Fatalf("ExecStart runs %s, want /usr/local/bin/roam", argv[0])
		}
		nodes.nodes = append(nodes.nodes, startRoamNode(t, id, argv[1:], nil, "cluster"))
	}
	waitMembers(t, nodes, n)

	// The balancer, from roam-lb.service and lb.yaml.
	listen, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addrs := exampleAddrs(listen, nodes)
	addrs["127.0.0.1:8081"] = adminAddr
	cfgPath := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfgPath, []byte(rewriteConfig(t, "systemd/lb.yaml", addrs)), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := expandExec(t, lbUnit.one(t, "ExecStart"), "", map[string]string{"CREDENTIALS_DIRECTORY": creds})
	for i, a := range argv {
		if a == "/etc/roam/lb.yaml" {
			argv[i] = cfgPath
		}
	}
	if argv[0] != "/usr/local/bin/roam" || !strings.Contains(strings.Join(argv, " "), cfgPath) {
		t.Fatalf("ExecStart %q: want /usr/local/bin/roam … --config /etc/roam/lb.yaml", argv)
	}
	bal := startRoamLB(t, argv[1:], listen, adminAddr, n)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{})

	// systemctl reload: SIGHUP re-reads lb.yaml.
	if err := syscall.Kill(bal.p.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = proc.Poll(ctx, func(ctx context.Context) error {
		page, err := scrape(ctx, "http://"+adminAddr+"/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(page, `roam_lb_config_reloads_total{result="ok"} 1`) {
			return fmt.Errorf("no successful reload counted yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after SIGHUP (ExecReload): %v", err)
	}
}

// waitBackendsUp waits until the balancer's admin API reports n backends,
// all up.
func waitBackendsUp(ctx context.Context, t *testing.T, admin string, n int) {
	t.Helper()
	err := proc.Poll(ctx, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/api/nodes", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var nodes []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
			return err
		}
		up := 0
		for _, nd := range nodes {
			if nd.State == "up" {
				up++
			}
		}
		if len(nodes) != n || up != n {
			return fmt.Errorf("backends %+v, want %d up", nodes, n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("balancer backends: %v", err)
	}
}
