package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/bench"
	"github.com/roamsession/roam/internal/testbin"
)

func TestBenchFaultFlags(t *testing.T) {
	c := benchConfig{
		kills: []string{"n2@10s", "n3"}, restarts: []string{"n2@50%"},
		rollingRestart: "5s", addNode: "@25%", killStore: "12s",
	}
	faults, err := benchFaults(c)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range faults {
		got = append(got, f.String())
	}
	want := "kill n2@10s,kill n3@50%,restart n2@50%,rolling-restart@5s,add-node@25%,kill-store@12s"
	if strings.Join(got, ",") != want {
		t.Errorf("faults = %s, want %s", strings.Join(got, ","), want)
	}
	if _, err := benchFaults(benchConfig{kills: []string{"@1s"}}); err == nil || !strings.Contains(err.Error(), "--kill") {
		t.Errorf("a kill without a node gave %v, want an error naming --kill", err)
	}
}

func TestBenchRejectsBadFlagsBeforeStartingAnything(t *testing.T) {
	for _, args := range [][]string{
		{"--strategy", "nope"},
		{"--nodes", "0"},
		{"--users", "0"},
		{"--kill", "n1@soon"},
		{"--store-url", "redis"},
		{"--strategies", "none"},
		{"--log-level", "loud"},
		{"--duration", "2h"},
		{"--duration", "0s"},
	} {
		var out, errOut bytes.Buffer
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"bench"}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil {
			t.Errorf("roam bench %s succeeded, want an error", strings.Join(args, " "))
		}
	}
}

func TestBenchRunsAndPrintsJSON(t *testing.T) {
	bin := testbin.Roam(t)
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// In this process the running executable is the test binary: name
	// the real one for the nodes.
	if err := runRoam(ctx, &out, "bench", "--binary", bin, "--strategy", "none", "--nodes", "2", "--users", "5", "--duration", "1s", "--json"); err != nil {
		t.Fatalf("roam bench: %v\n%s", err, out.String())
	}
	var r bench.Result
	line, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("first line of the output is no result: %v\n%s", err, out.String())
	}
	if r.Strategy != "none" || r.Nodes != 2 || r.Requests == 0 || len(r.RSSBytesPerNode) != 2 {
		t.Errorf("result %+v: want strategy none, 2 nodes, some requests, RSS of both nodes", r)
	}
}

func TestCommandLineQuotesWhatAShellWouldSplit(t *testing.T) {
	got := commandLine([]string{"/tmp/x/roam", "bench", "--kill", "n1@10s", "--out", "my dir", "--think", ""})
	if want := "roam bench --kill n1@10s --out 'my dir' --think ''"; got != want {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
}
