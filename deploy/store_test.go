package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
)

// storeSetup says how the nodes behind a balancer share their sessions.
type storeSetup struct {
	Spec string   // --store
	Kind string   // the store= word of the node's ready line
	Env  []string // extra environment of every node
	// Args returns extra flags for the i-th node (0-based), or nil.
	Args func(t *testing.T, i int) []string
	// Settled, when set, waits until the started nodes work as one.
	Settled func(t *testing.T, nodes *nodeSet)
}

// clusterSecret is the shared secret of the test clusters: gossip is
// encrypted and replication authenticated, as in production.
const clusterSecret = "deploy-test-cluster-secret"

// sharedStore is the store every balancer test runs its nodes on: the
// cluster store in primary–backup mode, as issue 10 asks. Node i gossips
// on a free loopback port and joins node 0. Replication listens on a port
// the kernel picks (peer=127.0.0.1:0; peers learn it from gossip) instead
// of gossip port + 1, which another process may hold.
func sharedStore(t *testing.T) storeSetup {
	t.Helper()
	var gossip []string
	return storeSetup{
		Spec: "cluster:backup?peer=127.0.0.1:0",
		Kind: "cluster",
		Env:  []string{"ROAM_CLUSTER_SECRET=" + clusterSecret},
		Args: func(t *testing.T, i int) []string {
			addr, err := proc.FreeAddr("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			gossip = append(gossip, addr)
			args := []string{"--cluster-bind", addr}
			if i > 0 {
				args = append(args, "--join", gossip[0])
			}
			return args
		},
		Settled: func(t *testing.T, nodes *nodeSet) { waitMembers(t, nodes, len(nodes.nodes)) },
	}
}

var readyMembers = regexp.MustCompile(`(?m)^roam_cluster_members\{[^}]*state="ready"[^}]*\} (\d+)$`)

// waitMembers waits until every node's /metrics says it sees n ready
// members, so that placement is the same everywhere before the test
// writes a session.
func waitMembers(t *testing.T, nodes *nodeSet, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, nd := range nodes.nodes {
		err := proc.Poll(ctx, func(ctx context.Context) error {
			got, err := readyMemberCount(ctx, nd.Addr)
			if err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("%s sees %d ready members, want %d", nd.ID, got, n)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("cluster did not settle: %v", err)
		}
	}
}

func readyMemberCount(ctx context.Context, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := readyMembers.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no roam_cluster_members{state=\"ready\"} in %s/metrics", addr)
	}
	return strconv.Atoi(string(m[1]))
}
