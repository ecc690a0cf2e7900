package launch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEveryDesignStrategyExists(t *testing.T) {
	want := []string{"none", "sticky", "ip-hash", "all", "backup", "redis", "redis-sentinel", "redis-cluster", "memcached", "postgres", "mysql"}
	if got := StrategyNames(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("StrategyNames() = %v, want %v", got, want)
	}
	policies := map[string]bool{"round_robin": true, "least_conn": true, "random_two": true, "ip_hash": true, "cookie": true, "hash_cookie": true, "owner": true}
	for _, s := range Strategies() {
		if !policies[s.Policy] {
			t.Errorf("%s: policy %q is not a balancer policy", s.Name, s.Policy)
		}
		if s.Summary == "" || len(s.Trade) < 200 {
			t.Errorf("%s: needs a summary and a paragraph on what it trades", s.Name)
		}
		if s.External() != (s.Holds == HeldByServer) {
			t.Errorf("%s: External() = %v but Holds = %s", s.Name, s.External(), s.Holds)
		}
		if s.External() {
			if _, ok := serverKinds[s.Server]; !ok {
				t.Errorf("%s: server kind %q has no install hint", s.Name, s.Server)
			}
		}
	}
	if s, _ := Lookup("backup"); s.Store != "cluster:backup" || s.Policy != "owner" {
		t.Errorf("backup = %s + %s, want cluster:backup + owner", s.Store, s.Policy)
	}
}

func TestLookupDefaultsToBackupAndListsNamesOnError(t *testing.T) {
	if s, err := Lookup(""); err != nil || s.Name != DefaultStrategy || DefaultStrategy != "backup" {
		t.Fatalf("Lookup(\"\") = %v, %v; want backup", s.Name, err)
	}
	_, err := Lookup("round-robin")
	if !errors.Is(err, ErrUnknownStrategy) || !strings.Contains(err.Error(), "sticky") {
		t.Fatalf("Lookup(round-robin) = %v, want ErrUnknownStrategy listing the names", err)
	}
}

func TestReadyWatcherFindsTheLineAcrossWrites(t *testing.T) {
	w := newReadyWatcher("n2")
	for _, chunk := range []string{"noise\nroam node n1 listening on http://127.0.0.1:1 store=memory\nroam node n2 lis", "tening on http://127.0.0.1:4242 store=memory\n"} {
		w.Write([]byte(chunk))
	}
	select {
	case addr := <-w.addr:
		if addr != "127.0.0.1:4242" {
			t.Fatalf("addr %q, want 127.0.0.1:4242 (the line of n2, not n1)", addr)
		}
	default:
		t.Fatal("no address after the ready line")
	}
}

func TestPrefixWriterWritesWholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := &prefixWriter{w: &buf, prefix: "n1 | "}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n"))
	if got, want := buf.String(), "n1 | one\nn1 | two\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	if got := redact("mysql://roam:s3cret@127.0.0.1:3306/roam"); strings.Contains(got, "s3cret") {
		t.Fatalf("redact kept the password: %q", got)
	}
	if got := redact("memory"); got != "memory" {
		t.Fatalf("redact(memory) = %q", got)
	}
}
