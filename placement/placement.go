// Package placement decides which members hold a session: its primary and
// its backups, by rendezvous (highest random weight) hashing over the live
// members. Every node, and the balancer's owner policy, computes the same
// answer from the same member list, so no per-session directory exists.
//
// Rendezvous hashing is chosen over partitions because of one property the
// failover story needs: when a member leaves, each id's new ranking is its
// old ranking with that member removed. The backup of a session whose
// primary died is therefore its new primary, already holding the data, and
// only the sessions that involved the departed member move (1/N of them).
//
// This package imports nothing else of roam.
package placement

import "slices"

// Score returns the rendezvous weight of member for key. The member with
// the highest score for a key is that key's primary.
func Score(member, key string) uint64 {
	// FNV-1a over member, a separator and key, then a splitmix64 finaliser:
	// FNV alone mixes its last bytes poorly, which skews which member wins.
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= prime
	}
	h ^= 0xff
	h *= prime
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Rank returns up to n members ordered by their score for key, highest
// first: the primary, then the backups in the order they take over. It
// returns nil when members is empty. Ties (vanishingly rare) are broken by
// member name so that every caller agrees. members is not modified.
func Rank(key string, members []string, n int) []string {
	if n <= 0 || len(members) == 0 {
		return nil
	}
	if n > len(members) {
		n = len(members)
	}
	type scored struct {
		m string
		s uint64
	}
	all := make([]scored, len(members))
	for i, m := range members {
		all[i] = scored{m, Score(m, key)}
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.s > b.s:
			return -1
		case a.s < b.s:
			return 1
		case a.m < b.m:
			return -1
		case a.m > b.m:
			return 1
		}
		return 0
	})
	out := make([]string, n)
	for i := range out {
		out[i] = all[i].m
	}
	return out
}

// Primary returns the member with the highest score for key, or "" when
// members is empty. It allocates nothing.
func Primary(key string, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		s := Score(m, key)
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}
