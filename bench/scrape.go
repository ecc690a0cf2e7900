package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// The node metrics a run reads. The names are the demo app's and the
// cluster store's (docs/demoapp.md, cluster/metrics.go).
const (
	metricPeerBytesSent = "roam_cluster_peer_bytes_sent_total"
	metricSessions      = "roam_cluster_sessions"
	metricRSS           = "process_resident_memory_bytes"
)

// storeCallMetrics are the session Manager's calls to its store: for an
// external store each is (at least) one network round trip.
var storeCallMetrics = []string{
	"roam_session_loads_total",
	"roam_session_creates_total",
	"roam_session_updates_total",
	"roam_session_touches_total",
	"roam_session_deletes_total",
}

// Sample is one line of a Prometheus text exposition: a metric name, its
// labels as written (`role="primary",node="n1"`, "" for none) and value.
type Sample struct {
	Name   string
	Labels string
	Value  float64
}

// Samples is a parsed /metrics page.
type Samples []Sample

// Sum returns the sum of every sample called name, whatever its labels.
func (s Samples) Sum(name string) float64 {
	var t float64
	for _, x := range s {
		if x.Name == name {
			t += x.Value
		}
	}
	return t
}

// SumWith returns the sum of the samples called name whose labels include
// label="value".
func (s Samples) SumWith(name, label, value string) float64 {
	want := label + `="` + value + `"`
	var t float64
	for _, x := range s {
		if x.Name == name && hasLabel(x.Labels, want) {
			t += x.Value
		}
	}
	return t
}

func hasLabel(labels, want string) bool {
	for rest := labels; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		if strings.TrimSpace(part) == want {
			return true
		}
	}
	return false
}

// ParseMetrics reads the Prometheus text format: comments and blank lines
// are skipped, a sample line is `name{labels} value [timestamp]`. A line
// that does not parse is skipped rather than failing the whole page (the
// bench only reads a few metrics and must not break on a new one it
// cannot read); the error reports the reader's failure only. Label values
// holding commas or braces are kept whole in Labels but SumWith may not
// match inside them; roam's metrics have none.
func ParseMetrics(r io.Reader) (Samples, error) {
	var out Samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var s Sample
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.Name, s.Labels, rest = line[:i], line[i+1:j], line[j+1:]
		} else {
			var ok bool
			s.Name, rest, ok = strings.Cut(line, " ")
			if !ok {
				continue
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// scrape fetches and parses url (a node's /metrics).
func scrape(ctx context.Context, c *http.Client, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil, fmt.Errorf("bench: GET %s: %s", url, resp.Status)
	}
	return ParseMetrics(io.LimitReader(resp.Body, 16<<20))
}

// errNoRSS is returned by readRSS where /proc has no VmRSS for the pid.
var errNoRSS = errors.New("bench: no VmRSS in /proc status")

// readRSS returns the resident set size of pid from /proc/PID/status
// (VmRSS, in kB there). It fails where /proc is missing (not Linux) or
// the process is gone.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: VmRSS of pid %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%w (pid %d)", errNoRSS, pid)
}
