package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/roamsession/roam/placement"
)

func TestJoinUnderLoadRebalancesAndLosesNothing(t *testing.T) {
	c := newTCluster(t, ModeBackup, 3, nil)
	l := newCounterLoad(t, c, 300)
	before := map[string]string{}
	for _, id := range l.ids {
		before[id] = placement.Primary(id, c.ids())
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(c, 4, stop, 1000); close(done) }()
	time.Sleep(200 * time.Millisecond)
	n4 := c.start("n4")
	if err := n4.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.waitMembers()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	if l.errs > 0 {
		t.Errorf("%d writes failed while a node joined, want 0", l.errs)
	}
	l.verify(t, c)
	c.waitPlaced(l.ids, 2)
	moved := 0
	for _, id := range l.ids {
		if placement.Primary(id, c.ids()) != before[id] {
			moved++
		}
	}
	// Rendezvous hashing moves only the sessions the new node wins: about
	// 1/4 of them (the bound in the issue is 1/N + 1%; allow sampling noise
	// for 300 sessions).
	if frac := float64(moved) / float64(len(l.ids)); frac > 0.25+0.08 {
		t.Errorf("%.0f%% of primaries moved when a fourth node joined, want about 25%%", frac*100)
	}
	l.verify(t, c)
}

func TestGracefulLeaveHandsOffFirst(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			c := newTCluster(t, mode, 3, nil)
			l := newCounterLoad(t, c, 200)
			l.run(c, 4, nil, 2)
			c.leave("n1")
			// No waiting for detection: a graceful leave is immediate.
			l.verify(t, c)
			if mode == ModeBackup {
				c.waitPlaced(l.ids, 2)
			}
		})
	}
}

func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			c := newTCluster(t, mode, 3, nil)
			l := newCounterLoad(t, c, 200)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { l.run(c, 4, stop, 100000); close(done) }()
			for _, id := range []string{"n1", "n2", "n3"} {
				c.leave(id)
				s := c.start(id)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := s.WaitReady(ctx)
				cancel()
				if err != nil {
					t.Fatalf("restarted %s: %v", id, err)
				}
				c.waitMembers()
			}
			close(stop)
			<-done
			if l.errs > 0 {
				t.Errorf("%d writes failed during the rolling restart, want 0", l.errs)
			}
			l.verify(t, c)
			if mode == ModeAll {
				waitDigests(t, c)
			}
		})
	}
}
