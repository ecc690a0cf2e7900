package cluster

import (
	"testing"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/storetest"
)

func TestConformanceOneNode(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) session.Store {
				return newTCluster(t, mode, 1, nil).node("n1")
			})
		})
	}
}

// TestConformanceThreeNodes runs the suite through a store that sends each
// call to the next of three nodes, so every check also covers forwarding,
// replication and read-your-writes across nodes.
func TestConformanceThreeNodes(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			storetest.RunWith(t, func(t *testing.T) session.Store {
				return &rotating{c: newTCluster(t, mode, 3, nil)}
			}, storetest.Options{Sessions: 300})
		})
	}
}
