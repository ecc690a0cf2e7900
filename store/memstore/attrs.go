package memstore

// attrs holds a session's attributes as a slice of pairs plus the total
// size of the values. Load, the hot path, copies them by walking a slice
// into one buffer of known size, which is markedly cheaper than walking a
// map. Lookups (on writes only) scan the slice while it is short, as
// sessions usually are, and use an index once it is not.
type attrs struct {
	kvs  []attr
	size int            // sum of len(v) over kvs
	pos  map[string]int // key → index in kvs; nil while len(kvs) <= linearMax
}

type attr struct {
	k string
	v []byte
}

// linearMax is the number of attributes up to which a scan beats a map.
const linearMax = 8

// find returns the index of k in a.kvs, or -1.
func (a *attrs) find(k string) int {
	if a.pos != nil {
		if i, ok := a.pos[k]; ok {
			return i
		}
		return -1
	}
	for i := range a.kvs {
		if a.kvs[i].k == k {
			return i
		}
	}
	return -1
}

// set stores v under k. v must already be the store's own copy.
func (a *attrs) set(k string, v []byte) {
	if i := a.find(k); i >= 0 {
		a.size += len(v) - len(a.kvs[i].v)
		a.kvs[i].v = v
		return
	}
	a.kvs = append(a.kvs, attr{k, v})
	a.size += len(v)
	switch {
	case a.pos != nil:
		a.pos[k] = len(a.kvs) - 1
	case len(a.kvs) > linearMax:
		a.pos = make(map[string]int, 2*len(a.kvs))
		for i, p := range a.kvs {
			a.pos[p.k] = i
		}
	}
}

// del removes k; an absent k is ignored.
func (a *attrs) del(k string) {
	i := a.find(k)
	if i < 0 {
		return
	}
	a.size -= len(a.kvs[i].v)
	last := len(a.kvs) - 1
	if a.pos != nil {
		delete(a.pos, k)
	}
	if i != last {
		a.kvs[i] = a.kvs[last]
		if a.pos != nil {
			a.pos[a.kvs[i].k] = i
		}
	}
	a.kvs[last] = attr{} // drop the references held by the spare slot
	a.kvs = a.kvs[:last]
}

// copyOut returns a copy of the attributes as a Values map. All values are
// copied into one allocation, and each is capped at its own length, so a
// caller appending to one cannot write into the next.
func (a *attrs) copyOut() map[string][]byte {
	buf := make([]byte, a.size)
	values := make(map[string][]byte, len(a.kvs))
	for _, p := range a.kvs {
		c := buf[:len(p.v):len(p.v)]
		copy(c, p.v)
		buf = buf[len(p.v):]
		values[p.k] = c
	}
	return values
}
