package bench

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syntheticResults builds results the way Run does, from recorded data.
func syntheticResults() []*Result {
	var out []*Result
	for _, n := range []int{2, 3} {
		for _, strategy := range []string{"none", "backup"} {
			s := Summarize(noneLike(10, 40), time.Second, 4*time.Second, 2*time.Second)
			r := &Result{
				Strategy: strategy, Nodes: n, Users: 10, DurationS: 4, ThinkMS: 100, WriteRatio: 0.3,
				Faults: []string{"kill n1@2s"}, Requests: s.Requests, Kept: s.Kept, SessionKeptRatio: s.KeptRatio,
				RequestsPerNode: s.PerNode, Timeline: s.Timeline, NodeIDs: []string{"n1", "n2", "n3"},
				FaultEvents:  []FaultEvent{{Fault: "kill n1@2s", AtS: 2, DoneS: 2.01}},
				RSSMeanBytes: int64(n) << 24, ReplicationBytesPerWrite: float64(100 * n),
				SessionsPerNode: map[string]int64{"n1": 10, "n2": 20},
				latency:         s.Latency,
			}
			out = append(out, r)
		}
	}
	out = append(out, &Result{Strategy: "redis", Nodes: 3, Error: "launch: store server not installed\nmore"})
	return out
}

func TestWriteReportWritesTableChartsAndJSON(t *testing.T) {
	dir := t.TempDir()
	rs := syntheticResults()
	info := ReportInfo{Command: "roam bench --matrix", Started: time.Now(), Took: time.Minute}
	if raceEnabled {
		info.Formats = []string{"svg"}
	}
	if err := WriteReport(dir, rs, info); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"roam bench --matrix", "| strategy | N | kept |", "| none | 3 |", "not run: launch: store server not installed", "kept-n3.", "memory-vs-n."} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "more") {
		t.Error("report.md shows more than the first line of an error")
	}
	for _, name := range []string{"kept-n2", "latency-n2", "load-n2", "kept-n3", "latency-n3", "load-n3", "memory-vs-n", "replication-vs-n", "sessions-vs-n"} {
		if !raceEnabled {
			b, err := os.ReadFile(filepath.Join(dir, name+".png"))
			if err != nil {
				t.Errorf("chart %s: %v", name, err)
				continue
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil || img.Bounds().Dx() < 100 {
				t.Errorf("chart %s.png is no picture: %v", name, err)
			}
		}
		svg, err := os.ReadFile(filepath.Join(dir, name+".svg"))
		if err != nil || !bytes.Contains(svg, []byte("<svg")) {
			t.Errorf("chart %s.svg is no SVG: %v", name, err)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil || !bytes.Contains(js, []byte(`"session_kept_ratio"`)) {
		t.Errorf("results.json: %v, %.200s", err, js)
	}
}

func TestWriteTableAlignsAndNotesFailures(t *testing.T) {
	var b strings.Builder
	rs := syntheticResults()
	rs[0].FaultEvents = append(rs[0].FaultEvents, FaultEvent{Fault: "kill-store@5s", Error: "bench: no store server to kill"})
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 6 {
		t.Fatalf("table too short:\n%s", out)
	}
	if len(lines[0]) != len(lines[1]) {
		t.Errorf("header and first row differ in width (%d, %d):\n%s", len(lines[0]), len(lines[1]), out)
	}
	for _, want := range []string{"redis  3  not run", "note: redis n=3 not run: launch: store server not installed", "note: none n=2: kill-store@5s failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
