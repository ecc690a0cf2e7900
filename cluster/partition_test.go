package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/placement"
	"github.com/roamsession/roam/session"
)

// The count behind split-brain protection: live members against live plus
// recently failed ones; graceful leavers and long-dead members do not
// count; half is enough.
func TestMajorityCount(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ttl := time.Minute
	up := func(name string) *member {
		return &member{name: name, alive: true, since: now.Add(-time.Hour)}
	}
	down := func(name string, ago time.Duration, left bool) *member {
		return &member{name: name, since: now.Add(-ago), downAt: now.Add(-ago), left: left}
	}
	for _, tc := range []struct {
		name      string
		members   []*member
		ttl       time.Duration
		ok        bool
		seen, all int
	}{
		{"alone", nil, ttl, true, 1, 1},
		{"all up", []*member{up("b"), up("c")}, ttl, true, 3, 3},
		{"one of three crashed", []*member{up("b"), down("c", time.Second, false)}, ttl, true, 2, 3},
		{"cut off from two", []*member{down("b", time.Second, false), down("c", time.Second, false)}, ttl, false, 1, 3},
		{"two of four: half is enough", []*member{up("b"), down("c", time.Second, false), down("d", time.Second, false)}, ttl, true, 2, 4},
		{"the others left gracefully", []*member{down("b", time.Second, true), down("c", time.Second, true)}, ttl, true, 1, 1},
		{"the others failed long ago", []*member{down("b", 2*time.Minute, false), down("c", 2*time.Minute, false)}, ttl, true, 1, 1},
		{"never seen alive", []*member{{name: "b"}, {name: "c"}}, ttl, true, 1, 1},
		{"protection off", []*member{down("b", time.Second, false), down("c", time.Second, false)}, -1, true, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &membership{s: &Store{cfg: Config{DeadMemberTTL: tc.ttl, Now: func() time.Time { return now }}}, members: map[string]*member{}}
			for _, mem := range tc.members {
				m.members[mem.name] = mem
			}
			ok, seen, all := m.majority()
			if ok != tc.ok || seen != tc.seen || all != tc.all {
				t.Errorf("majority() = %v, %d of %d; want %v, %d of %d", ok, seen, all, tc.ok, tc.seen, tc.all)
			}
		})
	}
}

// A node cut off from the rest stops serving its copies at once, and after
// the partition heals it serves again only once it has pulled what the
// others did meanwhile: not for a moment does it answer with a session
// logged out elsewhere or a counter the others moved on from.
func TestCutOffNodeNeverServesStaleCopies(t *testing.T) {
	for _, mode := range []Mode{ModeBackup, ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			f := newNetFilter()
			c := newTCluster(t, mode, 3, func(cfg *Config) { cfg.hooks = f.hooks(hostPart(cfg.Bind), nil) })
			ctx := ctxT(t)
			// Sessions whose primary is n1, the node to be cut off.
			var counter, gone string
			for counter == "" || gone == "" {
				id := session.NewID()
				if placement.Primary(id, c.ids()) != "n1" {
					continue
				}
				if counter == "" {
					counter = id
				} else {
					gone = id
				}
			}
			if err := c.node("n2").Apply(ctx, counter, newDelta("counter", "1")); err != nil {
				t.Fatal(err)
			}
			if err := c.node("n2").Apply(ctx, gone, newDelta("user", "frank")); err != nil {
				t.Fatal(err)
			}
			f.partition([]string{"127.0.0.1"}, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"})
			cut := c.node("n1")
			waitFor(t, 15*time.Second, "n2 and n3 to take n1 out, and n1 to leave placement", func() bool {
				return slices.Equal(c.readySet("n2"), []string{"n2", "n3"}) &&
					slices.Equal(c.readySet("n3"), []string{"n2", "n3"}) && cut.Ready() != nil
			})
			short, cancel := context.WithTimeout(ctx, 3*time.Second)
			rec, err := cut.Load(short, counter)
			cancel()
			if err == nil {
				t.Fatalf("the cut-off node served its copy (counter %q) while it sees 1 of 3 members", rec.Values["counter"])
			}
			if err := c.node("n2").Apply(ctx, counter, setDelta("counter", "2")); err != nil {
				t.Fatalf("write on the majority side: %v", err)
			}
			if err := c.node("n3").Delete(ctx, gone); err != nil {
				t.Fatalf("logout on the majority side: %v", err)
			}

			// From the heal on, watch every node's answers until the
			// cluster has settled.
			var mu sync.Mutex
			var bad []string
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, n := range c.ids() {
				s := c.node(n)
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						qctx, cancel := context.WithTimeout(ctx, time.Second)
						if rec, err := s.Load(qctx, counter); err == nil && string(rec.Values["counter"]) != "2" {
							mu.Lock()
							bad = append(bad, fmt.Sprintf("%s answered counter %q, want 2", n, rec.Values["counter"]))
							mu.Unlock()
						}
						if _, err := s.Load(qctx, gone); err == nil {
							mu.Lock()
							bad = append(bad, fmt.Sprintf("%s answered for the logged-out session", n))
							mu.Unlock()
						}
						cancel()
						time.Sleep(5 * time.Millisecond)
					}
				})
			}
			f.heal()
			c.waitMembers()
			if mode == ModeBackup {
				c.waitPlaced([]string{counter}, 2)
			}
			time.Sleep(200 * time.Millisecond) // a few more rounds of answers from the settled cluster
			close(stop)
			wg.Wait()
			for i, b := range bad {
				if i == 5 {
					t.Errorf("… %d more", len(bad)-5)
					break
				}
				t.Error(b)
			}
			for _, n := range c.ids() {
				if v := mustLoad(t, c.node(n), counter, "counter"); v != "2" {
					t.Errorf("settled, via %s: counter %q, want 2", n, v)
				}
				if _, err := c.node(n).Load(ctx, gone); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("settled, via %s: logged-out session: %v, want ErrNotFound", n, err)
				}
			}
		})
	}
}
