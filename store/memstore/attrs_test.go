package memstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAttrsFollowAMap drives attrs and a plain map through the same random
// sets and deletes, across the size where attrs switches from scanning to
// an index, and requires them to agree after every step.
func TestAttrsFollowAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a attrs
	ref := map[string][]byte{}
	for step := range 5000 {
		// Few enough keys that the set grows past linearMax and shrinks back.
		k := fmt.Sprintf("k%d", rng.IntN(3*linearMax))
		if rng.IntN(3) == 0 {
			a.del(k)
			delete(ref, k)
		} else {
			v := make([]byte, rng.IntN(20))
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			a.set(k, v)
			ref[k] = v
		}
		got := a.copyOut()
		size := 0
		for _, v := range ref {
			size += len(v)
		}
		if a.size != size || len(got) != len(ref) {
			t.Fatalf("step %d: attrs has %d keys, %d bytes; the map has %d keys, %d bytes", step, len(got), a.size, len(ref), size)
		}
		for k, v := range ref {
			if string(got[k]) != string(v) {
				t.Fatalf("step %d: attrs[%q] = %q, the map has %q", step, k, got[k], v)
			}
		}
	}
}
