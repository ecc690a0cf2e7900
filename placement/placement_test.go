package placement

import (
	"fmt"
	"testing"
)

func members(n int) []string {
	m := make([]string, n)
	for i := range m {
		m[i] = fmt.Sprintf("n%d", i+1)
	}
	return m
}

func TestRankIsStableAndPrimaryAgrees(t *testing.T) {
	ms := members(5)
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("key-%d", i)
		r := Rank(key, ms, 3)
		if len(r) != 3 {
			t.Fatalf("Rank returned %d members, want 3", len(r))
		}
		if p := Primary(key, ms); p != r[0] {
			t.Fatalf("Primary(%q) = %s, Rank's first = %s", key, p, r[0])
		}
		if r[0] == r[1] || r[1] == r[2] || r[0] == r[2] {
			t.Fatalf("Rank(%q) repeated a member: %v", key, r)
		}
	}
}

func TestBackupBecomesPrimaryWhenPrimaryLeaves(t *testing.T) {
	ms := members(4)
	for i := 0; i < 2000; i++ {
		key := fmt.Sprintf("s%d", i)
		r := Rank(key, ms, 2)
		var rest []string
		for _, m := range ms {
			if m != r[0] {
				rest = append(rest, m)
			}
		}
		if got := Primary(key, rest); got != r[1] {
			t.Fatalf("key %q: primary %s gone, new primary %s, want the old backup %s", key, r[0], got, r[1])
		}
	}
}

func TestJoinMovesAboutOneInN(t *testing.T) {
	const keys = 20000
	for n := 2; n <= 6; n++ {
		before, after := members(n), members(n+1)
		moved := 0
		for i := 0; i < keys; i++ {
			key := fmt.Sprintf("k%d", i)
			if Primary(key, before) != Primary(key, after) {
				moved++
			}
		}
		share := float64(moved) / keys
		want := 1 / float64(n+1)
		if share > want+0.01 || share < want-0.02 {
			t.Errorf("n=%d→%d: %.3f of keys moved, want about %.3f (at most +0.01)", n, n+1, share, want)
		}
	}
}

func TestBalance(t *testing.T) {
	ms := members(5)
	count := map[string]int{}
	const keys = 50000
	for i := 0; i < keys; i++ {
		count[Primary(fmt.Sprintf("id-%d", i), ms)]++
	}
	for m, c := range count {
		if share := float64(c) / keys; share < 0.18 || share > 0.22 {
			t.Errorf("member %s is primary for %.3f of keys, want 0.2±0.02", m, share)
		}
	}
}

func TestEmpty(t *testing.T) {
	if Rank("k", nil, 2) != nil || Primary("k", nil) != "" {
		t.Fatal("empty member list must give no placement")
	}
	if got := Rank("k", []string{"a"}, 3); len(got) != 1 || got[0] != "a" {
		t.Fatalf("Rank with one member = %v", got)
	}
}

func BenchmarkPrimary5(b *testing.B) {
	ms := members(5)
	for i := 0; i < b.N; i++ {
		Primary("0123456789abcdefghijABCDEFGHIJ0123456789abc", ms)
	}
}
