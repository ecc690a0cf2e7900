package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chart is one chart a report shows; file is its name without extension.
type chart struct {
	title, file string
}

// Chart size: wide enough for eleven legend entries beside the plot.
const (
	chartW = 9 * vg.Inch
	chartH = 5 * vg.Inch
)

// writeCharts draws the report's charts into dir, in each of formats
// (file extensions gonum/plot knows: png, svg, pdf, …), and returns them in the order the report shows them: per node count,
// kept ratio over time, latency distribution and load per node; then, when
// the results span several node counts, memory and replication against N.
func writeCharts(dir string, results []*Result, formats []string) ([]chart, error) {
	var ok []*Result
	for _, r := range results {
		if r.Error == "" {
			ok = append(ok, r)
		}
	}
	var counts []int
	for _, r := range ok {
		if !slices.Contains(counts, r.Nodes) {
			counts = append(counts, r.Nodes)
		}
	}
	var out []chart
	save := func(p *plot.Plot, leg *plot.Legend, c chart) error {
		for _, ext := range formats {
			if err := saveChart(p, leg, filepath.Join(dir, c.file+"."+ext), ext); err != nil {
				return fmt.Errorf("bench: chart %s: %w", c.file, err)
			}
		}
		out = append(out, c)
		return nil
	}
	for _, n := range counts {
		var rs []*Result
		for _, r := range ok {
			if r.Nodes == n {
				rs = append(rs, r)
			}
		}
		suffix := "-n" + strconv.Itoa(n)
		steps := []struct {
			c    chart
			draw func([]*Result) (*plot.Plot, *plot.Legend, error)
		}{
			{chart{fmt.Sprintf("Sessions kept over time, N = %d", n), "kept" + suffix}, keptChart},
			{chart{fmt.Sprintf("Latency distribution, N = %d", n), "latency" + suffix}, latencyChart},
			{chart{fmt.Sprintf("Load per node, N = %d%s", n, beforeFault(rs)), "load" + suffix}, loadChart},
		}
		for _, s := range steps {
			p, leg, err := s.draw(rs)
			if err != nil {
				return nil, fmt.Errorf("bench: chart %s: %w", s.c.file, err)
			}
			p.Title.Text = s.c.title
			if err := save(p, leg, s.c); err != nil {
				return nil, err
			}
		}
	}
	if len(counts) > 1 {
		for _, s := range []struct {
			c     chart
			ylab  string
			value func(*Result) float64
		}{
			{chart{"Memory per node against N", "memory-vs-n"}, "mean RSS per node (MiB)", func(r *Result) float64 { return float64(r.RSSMeanBytes) / (1 << 20) }},
			{chart{"Replication traffic per write against N", "replication-vs-n"}, "peer bytes sent per acknowledged write", func(r *Result) float64 { return r.ReplicationBytesPerWrite }},
			{chart{"Sessions held per node against N", "sessions-vs-n"}, "sessions per node (cluster stores report it)", meanSessions},
		} {
			p, leg, err := byNChart(ok, s.ylab, s.value)
			if err != nil {
				return nil, fmt.Errorf("bench: chart %s: %w", s.c.file, err)
			}
			p.Title.Text = s.c.title
			if err := save(p, leg, s.c); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// styleLine gives the i-th series its colour and dash pattern, so that
// eleven strategies stay apart in print as well as on screen.
func styleLine(l *plotter.Line, i int) {
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i / 7)
	l.Width = vg.Points(1.5)
}

func newPlot(xlab, ylab string) (*plot.Plot, *plot.Legend) {
	p := plot.New()
	p.X.Label.Text = xlab
	p.Y.Label.Text = ylab
	p.Add(plotter.NewGrid())
	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	return p, &leg
}

// saveChart draws p with its legend in a column of its own on the right,
// where it hides no data (the plot's own legend sits on the data), and
// writes it to file in format.
func saveChart(p *plot.Plot, leg *plot.Legend, file, format string) error {
	c, err := draw.NewFormattedCanvas(chartW, chartH, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	legW := leg.Rectangle(dc).Size().X + vg.Points(16)
	p.Draw(draw.Crop(dc, 0, -legW, 0, 0))
	// Start the legend level with the top of the plot area, below the
	// title.
	top := -p.Title.TextStyle.Height(p.Title.Text) - p.Title.Padding - vg.Points(8)
	leg.Draw(draw.Crop(dc, chartW-legW+vg.Points(8), 0, 0, top))
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// beforeFault says what the load chart counts when the runs had faults.
func beforeFault(rs []*Result) string {
	for _, r := range rs {
		if len(r.Faults) > 0 {
			return ", before the first fault"
		}
	}
	return ""
}

// keptChart: each run's kept ratio per timeline window, with the faults
// marked as vertical lines at the time they began.
func keptChart(rs []*Result) (*plot.Plot, *plot.Legend, error) {
	p, leg := newPlot("seconds since the load began", "session requests kept")
	p.Y.Min, p.Y.Max = 0, 1.05
	var tmax float64
	for i, r := range rs {
		pts := make(plotter.XYs, 0, len(r.Timeline))
		for _, w := range r.Timeline {
			if w.Judged() == 0 {
				continue // nothing was asked in the window: no point
			}
			// A window's point sits at its middle.
			pts = append(pts, plotter.XY{X: w.StartS + r.windowS()/2, Y: w.KeptRatio})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, nil, err
		}
		styleLine(l, i)
		p.Add(l)
		leg.Add(r.Strategy, l)
		tmax = max(tmax, r.DurationS)
	}
	if len(rs) > 0 {
		for _, ev := range rs[0].FaultEvents {
			l, err := plotter.NewLine(plotter.XYs{{X: ev.AtS, Y: 0}, {X: ev.AtS, Y: 1.05}})
			if err != nil {
				return nil, nil, err
			}
			l.Color = color.Gray{Y: 90}
			l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(l)
			lab, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: ev.AtS, Y: 0.02}}, Labels: []string{" " + ev.Fault}})
			if err != nil {
				return nil, nil, err
			}
			p.Add(lab)
		}
	}
	p.X.Min, p.X.Max = 0, max(tmax, 1)
	return p, leg, nil
}

// latencyChart: each run's latency CDF on a log axis.
func latencyChart(rs []*Result) (*plot.Plot, *plot.Legend, error) {
	p, leg := newPlot("latency (ms, log scale)", "fraction of requests at most that slow")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, r := range rs {
		lat, frac := r.Latency().CDF()
		if len(lat) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(lat))
		for j := range lat {
			pts[j] = plotter.XY{X: max(ms(lat[j]), 0.001), Y: frac[j]}
			lo, hi = min(lo, pts[j].X), max(hi, pts[j].X)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, nil, err
		}
		styleLine(l, i)
		p.Add(l)
		leg.Add(r.Strategy, l)
	}
	// A log axis must stay above zero: set the range rather than let the
	// plot pad a single value down to 0.
	if lo > hi {
		lo, hi = 0.01, 100
	}
	p.X.Min, p.X.Max = lo/1.5, hi*1.5
	return p, leg, nil
}

// loadChart: each run's share of requests per node, one group of bars per
// strategy; an even spread puts every bar at 1/N.
func loadChart(rs []*Result) (*plot.Plot, *plot.Legend, error) {
	p, leg := newPlot("", "share of requests served")
	var names []string
	most := 0
	for _, r := range rs {
		names = append(names, r.Strategy)
		most = max(most, len(r.NodeIDs))
	}
	if most == 0 {
		return p, leg, nil
	}
	w := vg.Points(min(40/float64(most), 10))
	top := 0.0
	for k := range most {
		vals := make(plotter.Values, len(rs))
		id := ""
		for i, r := range rs {
			if k < len(r.NodeIDs) {
				id = r.NodeIDs[k]
				per := r.RequestsPerNodeBeforeFault
				if len(per) == 0 {
					per = r.RequestsPerNode
				}
				total := 0
				for _, c := range per {
					total += c
				}
				if total > 0 {
					vals[i] = float64(per[r.NodeIDs[k]]) / float64(total)
					top = max(top, vals[i])
				}
			}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, nil, err
		}
		b.Color = plotutil.Color(k)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(k)-float64(most-1)/2)
		p.Add(b)
		leg.Add(id, b)
	}
	p.Y.Min, p.Y.Max = 0, max(top*1.1, 0.1)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = draw.XRight
	return p, leg, nil
}

// meanSessions returns the mean sessions per node, -1 when the nodes did
// not report it.
func meanSessions(r *Result) float64 {
	if len(r.SessionsPerNode) == 0 {
		return -1
	}
	var sum int64
	for _, v := range r.SessionsPerNode {
		sum += v
	}
	return float64(sum) / float64(len(r.SessionsPerNode))
}

// byNChart: one line per strategy of value against the node count; a
// negative value means the run has none and is left out.
func byNChart(rs []*Result, ylab string, value func(*Result) float64) (*plot.Plot, *plot.Legend, error) {
	p, leg := newPlot("nodes (N)", ylab)
	var order []string
	series := map[string]plotter.XYs{}
	for _, r := range rs {
		v := value(r)
		if v < 0 {
			continue // the run has no such value
		}
		if _, ok := series[r.Strategy]; !ok {
			order = append(order, r.Strategy)
		}
		series[r.Strategy] = append(series[r.Strategy], plotter.XY{X: float64(r.Nodes), Y: v})
	}
	for i, s := range order {
		pts := series[s]
		slices.SortFunc(pts, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		l, pt, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, nil, err
		}
		styleLine(l, i)
		pt.Color = plotutil.Color(i)
		pt.Shape = plotutil.Shape(i)
		p.Add(l, pt)
		leg.Add(s, l, pt)
	}
	p.Y.Min = 0
	return p, leg, nil
}
