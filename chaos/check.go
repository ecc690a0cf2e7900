package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/session"
)

// VerifyDead presents logged-out session ids to every node directly (not
// through the balancer, so each node's own copy is what answers) and
// returns an error naming every id a node accepted. At most limit ids are
// tried, spread evenly over dead (all when limit ≤ 0). A node that fails to
// answer is asked again until ctx ends; it then fails the check too: a
// dead id is only known refused once every node has said 401.
func (c *Cluster) VerifyDead(ctx context.Context, dead []DeadCookie, limit int) error {
	sample := dead
	if limit > 0 && len(dead) > limit {
		sample = make([]DeadCookie, 0, limit)
		for i := range limit {
			sample = append(sample, dead[i*len(dead)/limit])
		}
	}
	client := &http.Client{Timeout: 3 * time.Second}
	var bad []string
	for _, n := range c.Nodes() {
		for _, d := range sample {
			var status int
			var node string
			err := proc.Poll(ctx, func(ctx context.Context) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/api/me", nil)
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Cookie", sessionCookie+"="+d.ID)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				status, node = resp.StatusCode, resp.Header.Get("X-Roam-Node")
				if status != http.StatusOK && status != http.StatusUnauthorized {
					return fmt.Errorf("%s answered %d", n.ID, status)
				}
				return nil
			})
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: %s's logged-out id %s… (session %s in the logs): no verdict: %v", n.ID, d.User, d.ID[:8], session.Fingerprint(d.ID), err))
			case status == http.StatusOK:
				bad = append(bad, fmt.Sprintf("%s (answered by %s): %s's id %s… (session %s in the logs), logged out at %v, works again",
					n.ID, node, d.User, d.ID[:8], session.Fingerprint(d.ID), d.At.Round(time.Millisecond)))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("chaos: %d of %d checks of logged-out ids failed:\n%s", len(bad), len(sample)*len(c.Nodes()), strings.Join(bad, "\n"))
	}
	return nil
}

// Usage is one node's resource use, from its /metrics.
type Usage struct {
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	RSS        float64 // process_resident_memory_bytes
	Goroutines float64 // go_goroutines
	// Strays are sessions a cluster node holds without being one of
	// their holders (roam_cluster_sessions{role="other"}): copies it
	// should have handed on and dropped.
	Strays float64
}

func (u Usage) String() string {
	return fmt.Sprintf("heap %.1f MiB, rss %.1f MiB, %v goroutines, %v strays", u.HeapInuse/(1<<20), u.RSS/(1<<20), u.Goroutines, u.Strays)
}

// Usage reads every running node's Usage.
func (c *Cluster) Usage(ctx context.Context) (map[string]Usage, error) {
	out := map[string]Usage{}
	var errs []error
	for _, n := range c.Nodes() {
		if n.State != NodeRunning {
			continue
		}
		m, err := c.Metrics(ctx, n.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[n.ID] = Usage{
			HeapInuse:  m.Sum("go_memstats_heap_inuse_bytes"),
			RSS:        m.Sum("process_resident_memory_bytes"),
			Goroutines: m.Sum("go_goroutines"),
			Strays:     m.SumWith("roam_cluster_sessions", "role", "other"),
		}
	}
	return out, errors.Join(errs...)
}

// Tolerances of WaitUsageBack: what a node may use above its baseline
// once the faults are over. The heap of a node serving the same load
// swings with the garbage collector's cycle (up to twice the live heap);
// goroutines come and go with connections.
const (
	heapFactor     = 1.5
	heapSlack      = 16 << 20
	goroutineSlack = 40
)

// WaitUsageBack waits until every node's heap and goroutines are back
// within the tolerances above of base (taken under the same load before
// the faults) and no node holds stray sessions. It returns what was still
// above when ctx ended, and the last readings either way.
func (c *Cluster) WaitUsageBack(ctx context.Context, base map[string]Usage) (map[string]Usage, error) {
	var last map[string]Usage
	err := proc.Poll(ctx, func(ctx context.Context) error {
		u, err := c.Usage(ctx)
		if err != nil {
			return err
		}
		last = u
		var over []string
		ids := make([]string, 0, len(base))
		for id := range base {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			b, now := base[id], u[id]
			if now.HeapInuse > heapFactor*b.HeapInuse+heapSlack {
				over = append(over, fmt.Sprintf("%s heap %.1f MiB (baseline %.1f)", id, now.HeapInuse/(1<<20), b.HeapInuse/(1<<20)))
			}
			if now.Goroutines > heapFactor*b.Goroutines+goroutineSlack {
				over = append(over, fmt.Sprintf("%s %v goroutines (baseline %v)", id, now.Goroutines, b.Goroutines))
			}
			if now.Strays > 0 {
				over = append(over, fmt.Sprintf("%s holds %v stray sessions", id, now.Strays))
			}
		}
		if len(over) > 0 {
			return errors.New(strings.Join(over, "; "))
		}
		return nil
	})
	if err != nil {
		return last, fmt.Errorf("chaos: resource use not back to its baseline: %w", err)
	}
	return last, nil
}
