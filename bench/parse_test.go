package bench

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	tests := []struct {
		kind FaultKind
		spec string
		want Fault
		when time.Duration // in a 20s load
	}{
		{FaultKill, "n2@10s", Fault{Kind: FaultKill, Node: "n2", At: 10 * time.Second}, 10 * time.Second},
		{FaultKill, "n2", Fault{Kind: FaultKill, Node: "n2", Frac: 0.5}, 10 * time.Second},
		{FaultRestart, "n1@25%", Fault{Kind: FaultRestart, Node: "n1", Frac: 0.25}, 5 * time.Second},
		{FaultRollingRestart, "3s", Fault{Kind: FaultRollingRestart, At: 3 * time.Second}, 3 * time.Second},
		{FaultAddNode, "@1.5s", Fault{Kind: FaultAddNode, At: 1500 * time.Millisecond}, 1500 * time.Millisecond},
		{FaultKillStore, "50%", Fault{Kind: FaultKillStore, Frac: 0.5}, 10 * time.Second},
	}
	for _, tt := range tests {
		got, err := ParseFault(tt.kind, tt.spec)
		if err != nil {
			t.Errorf("ParseFault(%s, %q): %v", tt.kind, tt.spec, err)
			continue
		}
		if got != tt.want || got.When(20*time.Second) != tt.when {
			t.Errorf("ParseFault(%s, %q) = %+v at %v, want %+v at %v", tt.kind, tt.spec, got, got.When(20*time.Second), tt.want, tt.when)
		}
	}
	for _, bad := range []struct {
		kind FaultKind
		spec string
	}{{FaultKill, "@10s"}, {FaultKill, "n1@soon"}, {FaultKill, "n1@-1s"}, {FaultAddNode, "150%"}, {FaultAddNode, "0%"}, {FaultKillStore, ""}} {
		if _, err := ParseFault(bad.kind, bad.spec); !errors.Is(err, ErrBadFault) {
			t.Errorf("ParseFault(%s, %q) = %v, want ErrBadFault", bad.kind, bad.spec, err)
		}
	}
}

func TestFaultStringRoundTrips(t *testing.T) {
	for _, f := range []Fault{{Kind: FaultKill, Node: "n3", At: 2 * time.Second}, {Kind: FaultRollingRestart, Frac: 0.4}} {
		kind, spec, _ := strings.Cut(f.String(), " ")
		if !f.Kind.takesNode() {
			kind, spec, _ = strings.Cut(f.String(), "@")
		}
		got, err := ParseFault(FaultKind(kind), spec)
		if err != nil || got != f {
			t.Errorf("%q parses back as %+v (%v), want %+v", f.String(), got, err, f)
		}
	}
}

func TestScheduleAddsARestoreAfterEachStoreKill(t *testing.T) {
	d := 20 * time.Second
	got := schedule([]Fault{
		{Kind: FaultKill, Node: "n1", At: 12 * time.Second},
		{Kind: FaultKillStore, At: 5 * time.Second},
	}, d, 3*time.Second)
	var kinds []FaultKind
	for _, f := range got {
		kinds = append(kinds, f.Kind)
	}
	if want := []FaultKind{FaultKillStore, FaultRestoreStore, FaultKill}; !slices.Equal(kinds, want) {
		t.Fatalf("schedule = %v, want %v", kinds, want)
	}
	if got[1].When(d) != 8*time.Second {
		t.Errorf("restore at %v, want 8s", got[1].When(d))
	}
	if n := len(schedule([]Fault{{Kind: FaultKillStore, At: time.Second}}, d, -1)); n != 1 {
		t.Errorf("with no downtime the schedule has %d faults, want 1 (never restored)", n)
	}
}

func TestParseMetrics(t *testing.T) {
	page := `# HELP roam_cluster_peer_bytes_sent_total Bytes sent.
# TYPE roam_cluster_peer_bytes_sent_total counter
roam_cluster_peer_bytes_sent_total{mode="backup",node="n1"} 12345
roam_cluster_sessions{mode="backup",node="n1",role="primary"} 10
roam_cluster_sessions{mode="backup",node="n1",role="backup"} 7
roam_cluster_sessions{mode="backup",node="n1",role="tombstone"} 3
roam_session_loads_total 1.5e3
process_resident_memory_bytes 2.4e+07 1700000000000
garbage line
name_without_value
`
	m, err := ParseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want float64
	}{
		{"peer bytes", m.Sum(metricPeerBytesSent), 12345},
		{"all sessions rows", m.Sum(metricSessions), 20},
		{"primary sessions", m.SumWith(metricSessions, "role", "primary"), 10},
		{"loads", m.Sum("roam_session_loads_total"), 1500},
		{"rss with a timestamp", m.Sum(metricRSS), 2.4e7},
		{"missing metric", m.Sum("nope"), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if len(m) != 6 {
		t.Errorf("parsed %d samples, want 6 (bad lines skipped)", len(m))
	}
}

func TestParseNodeCounts(t *testing.T) {
	for in, want := range map[string][]int{"3": {3}, "3,5": {3, 5}, "2-6": {2, 3, 4, 5, 6}, "2-3,3,8": {2, 3, 8}} {
		got, err := ParseNodeCounts(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseNodeCounts(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "x", "5-2", "3,"} {
		if _, err := ParseNodeCounts(bad); !errors.Is(err, ErrOptions) {
			t.Errorf("ParseNodeCounts(%q) = %v, want ErrOptions", bad, err)
		}
	}
}

func TestUserAddrsAreDistinctLoopbackAddresses(t *testing.T) {
	seen := map[string]bool{}
	for i := range MaxUsers {
		ip := UserAddr(i)
		if !ip.IsLoopback() {
			t.Fatalf("UserAddr(%d) = %v, not loopback", i, ip)
		}
		if ip[15] == 0 || ip[15] == 255 || ip.String() == "127.0.0.1" {
			t.Fatalf("UserAddr(%d) = %v, want no .0, .255 or 127.0.0.1", i, ip)
		}
		if seen[ip.String()] {
			t.Fatalf("UserAddr(%d) = %v, already used", i, ip)
		}
		seen[ip.String()] = true
	}
}
