package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// column is one column of the results table.
type column struct {
	head string
	cell func(r *Result) string
}

// tableColumns returns the table's columns; with faults, the kept ratio
// before and after the first one too.
func tableColumns(results []*Result) []column {
	cols := []column{
		{"strategy", func(r *Result) string { return r.Strategy }},
		{"N", func(r *Result) string { return fmt.Sprint(r.Nodes) }},
		{"kept", func(r *Result) string { return fmt.Sprintf("%.1f%%", 100*r.SessionKeptRatio) }},
	}
	for _, r := range results {
		if r.KeptBeforeFault != nil {
			cols = append(cols,
				column{"before fault", func(r *Result) string { return pctOf(r.KeptBeforeFault) }},
				column{"after", func(r *Result) string { return pctOf(r.KeptAfterFault) }})
			break
		}
	}
	return append(cols, []column{
		{"users logged out", func(r *Result) string { return fmt.Sprintf("%d/%d", r.UsersLoggedOut, r.Users) }},
		{"lost incr.", func(r *Result) string { return fmt.Sprintf("%d/%d", r.LostIncrements, r.AckedIncrements) }},
		{"5xx", func(r *Result) string { return fmt.Sprint(r.Errors5xx) }},
		{"other err", func(r *Result) string { return fmt.Sprint(r.ErrorsOther) }},
		{"p50 ms", func(r *Result) string { return fmt.Sprintf("%.2f", r.P50MS) }},
		{"p99 ms", func(r *Result) string { return fmt.Sprintf("%.2f", r.P99MS) }},
		{"max ms", func(r *Result) string { return fmt.Sprintf("%.0f", r.MaxMS) }},
		{"rps", func(r *Result) string { return fmt.Sprintf("%.0f", r.RPS) }},
		{"load max/mean", func(r *Result) string { return fmt.Sprintf("%.2f", r.LoadBeforeFault) }},
		{"RSS/node MiB", func(r *Result) string { return fmt.Sprintf("%.1f", float64(r.RSSMeanBytes)/(1<<20)) }},
		{"sessions/node", func(r *Result) string { return sessionsCell(r) }},
		{"repl. KiB", func(r *Result) string { return fmt.Sprintf("%.0f", float64(r.ReplicationBytes)/1024) }},
		{"store calls/req", func(r *Result) string { return fmt.Sprintf("%.2f", r.StoreTripsPerRequest) }},
	}...)
}

func pctOf(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**v)
}

func sessionsCell(r *Result) string {
	m := meanSessions(r)
	if m < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", m)
}

// failedCell is what a run that could not be made shows instead of its
// numbers: the first line of its error.
func failedCell(r *Result) string {
	msg, _, _ := strings.Cut(r.Error, "\n")
	return "not run: " + msg
}

// faultErrors lists the faults of r that failed, for a note under the
// table.
func faultErrors(r *Result) []string {
	var out []string
	for _, ev := range r.FaultEvents {
		if ev.Error != "" {
			msg, _, _ := strings.Cut(ev.Error, "\n")
			out = append(out, fmt.Sprintf("%s n=%d: %s failed: %s", r.Strategy, r.Nodes, ev.Fault, msg))
		}
	}
	return out
}

// WriteTable writes results as an aligned text table, one row per run,
// followed by a note for each run that could not be made and each fault
// that failed. It returns w's first write error.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := tableColumns(results)
	for i, c := range cols {
		fmt.Fprint(tw, c.head, "\t")
		if i == len(cols)-1 {
			fmt.Fprintln(tw)
		}
	}
	var notes []string
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\tnot run\t\n", r.Strategy, r.Nodes)
			notes = append(notes, fmt.Sprintf("%s n=%d %s", r.Strategy, r.Nodes, failedCell(r)))
			continue
		}
		for _, c := range cols {
			fmt.Fprint(tw, c.cell(r), "\t")
		}
		fmt.Fprintln(tw)
		notes = append(notes, faultErrors(r)...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, "note:", n); err != nil {
			return err
		}
	}
	return nil
}

// Markdown returns results as a Markdown table, with a note for each run
// that could not be made and each fault that failed.
func Markdown(results []*Result) string {
	var b strings.Builder
	cols := tableColumns(results)
	b.WriteString("|")
	for _, c := range cols {
		b.WriteString(" " + c.head + " |")
	}
	b.WriteString("\n|")
	for i := range cols {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	var notes []string
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | %d | %s |%s\n", r.Strategy, r.Nodes, mdEscape(failedCell(r)), strings.Repeat(" |", len(cols)-3))
			continue
		}
		b.WriteString("|")
		for _, c := range cols {
			b.WriteString(" " + mdEscape(c.cell(r)) + " |")
		}
		b.WriteString("\n")
		notes = append(notes, faultErrors(r)...)
	}
	for _, n := range notes {
		b.WriteString("\n- " + mdEscape(n))
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// ReportInfo is what a report says about how it was made.
type ReportInfo struct {
	// Command is the command line that made the results.
	Command string
	// Started is when the first run began.
	Started time.Time
	// Took is how long all runs took.
	Took time.Duration
	// Machine describes the host ("2 cores, linux/amd64").
	Machine string
	// Formats are the chart formats to write, as file extensions; png and
	// svg when empty. The report shows the first.
	Formats []string
}

// WriteReport writes dir/report.md (the table, how it was made, what the
// columns mean, the charts), dir/results.json (every result, timelines
// included) and the charts (info.Formats). It creates dir when missing.
// A chart that cannot be drawn fails the report with the chart's name.
func WriteReport(dir string, results []*Result, info ReportInfo) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	formats := info.Formats
	if len(formats) == 0 {
		formats = []string{"png", "svg"}
	}
	charts, err := writeCharts(dir, results, formats)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	var b strings.Builder
	b.WriteString("# roam bench\n\n")
	if info.Command != "" {
		fmt.Fprintf(&b, "```sh\n%s\n```\n\n", info.Command)
	}
	if !info.Started.IsZero() {
		fmt.Fprintf(&b, "Run %s", info.Started.UTC().Format("2006-01-02 15:04 MST"))
		if info.Took > 0 {
			fmt.Fprintf(&b, ", took %s", info.Took.Round(time.Second))
		}
		if info.Machine != "" {
			fmt.Fprintf(&b, ", on %s", info.Machine)
		}
		b.WriteString(".\n\n")
	}
	if len(results) > 0 {
		r := results[0]
		fmt.Fprintf(&b, "Workload: %d users, %gs, think %gms, %.0f%% writes", r.Users, r.DurationS, r.ThinkMS, 100*r.WriteRatio)
		if len(r.Faults) > 0 {
			fmt.Fprintf(&b, "; faults: %s", strings.Join(r.Faults, ", "))
		}
		if r.Sessions > 0 {
			fmt.Fprintf(&b, "; %d idle sessions created first", r.Sessions)
		}
		b.WriteString(".\n\n")
	}
	b.WriteString(Markdown(results))
	b.WriteString("\n")
	b.WriteString(ColumnGuide)
	for _, c := range charts {
		fmt.Fprintf(&b, "\n## %s\n\n![%s](%s)\n", c.title, c.title, c.file+"."+formats[0])
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	return nil
}

// ColumnGuide explains the table's columns, for reports and docs.
const ColumnGuide = `What the columns mean:

- **kept**: of the session requests (GET /api/me, POST /api/counter) that got an answer, the share answered 200 for the right user with every acknowledged increment in it. Requests that failed (5xx, no answer) are not in it; they are counted under 5xx and other err. With faults, **before fault** and **after** split it at the first fault: the steady state, and what the fault did.
- **users logged out**: users who got at least one 401 after logging in (each logs in again and carries on).
- **lost incr.**: acknowledged increments a later answer did not reflect (a logged-out user's whole counter counts), over all acknowledged increments.
- **p50/p99/max ms**: latency of every answered request, as the client saw it through the balancer.
- **load max/mean**: requests served by the busiest node over the mean of the N nodes, before the first fault (the JSON's load_max_over_mean_before_fault; load_max_over_mean covers the whole run); 1.00 is an even spread.
- **RSS/node**: mean resident memory of the node processes at the end of the load; **sessions/node**: sessions each node holds (cluster stores report it).
- **repl. KiB**: peer-protocol bytes the nodes sent each other during the load.
- **store calls/req**: the session layer's store operations per request (for an external store, one network round trip each).
`
