package cluster

import (
	"sync/atomic"
	"time"
)

// maxClockSkew bounds how far ahead of the local wall clock a peer's stamp
// may pull this node's clock: a peer with a clock an hour fast must not
// make every later local write look an hour old to everyone else.
const maxClockSkew = time.Minute

// hlc is a hybrid logical clock packed in one uint64: nanoseconds since the
// Unix epoch, bumped past every reading it has given or observed. Readings
// from one node are strictly increasing, and a node that has seen a write
// stamps every later write of its own after it, so a causally later write
// always wins the last-writer-wins merge even across skewed clocks.
type hlc struct {
	last atomic.Uint64
	now  func() time.Time
}

func (c *hlc) wall() uint64 { return uint64(c.now().UnixNano()) }

// next returns a fresh reading, greater than every earlier one.
func (c *hlc) next() uint64 {
	for {
		l := c.last.Load()
		p := c.wall()
		if p <= l {
			p = l + 1
		}
		if c.last.CompareAndSwap(l, p) {
			return p
		}
	}
}

// observe moves the clock past t, a reading from a peer, up to maxClockSkew
// ahead of the local wall clock.
func (c *hlc) observe(t uint64) {
	limit := c.wall() + uint64(maxClockSkew)
	t = min(t, limit)
	for {
		l := c.last.Load()
		if t <= l || c.last.CompareAndSwap(l, t) {
			return
		}
	}
}
