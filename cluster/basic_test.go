package cluster

import (
	"slices"
	"testing"

	"github.com/roamsession/roam/placement"
)

func TestBackupModeReplicatesToPrimaryAndBackupOnly(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	ctx := ctxT(t)
	for _, via := range c.ids() {
		id := "sess-" + via
		if err := c.node(via).Apply(ctx, id, newDelta("counter", "1")); err != nil {
			t.Fatalf("Apply via %s: %v", via, err)
		}
		want := placement.Rank(id, c.ids(), 2)
		got := c.holdersOf(id)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("session created via %s held by %v, want primary and backup %v", via, got, want)
		}
		for _, n := range c.ids() {
			if v := mustLoad(t, c.node(n), id, "counter"); v != "1" {
				t.Errorf("Load via %s: counter %q, want 1", n, v)
			}
		}
	}
}

func TestAsyncReplicationReachesEveryHolder(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			c := newTCluster(t, mode, 3, func(cfg *Config) { cfg.Async = true })
			l := newCounterLoad(t, c, 100)
			l.run(c, 4, nil, 3)
			if mode == ModeBackup {
				c.waitPlaced(l.ids, 2)
			} else {
				waitDigests(t, c)
			}
			l.verify(t, c)
		})
	}
}
