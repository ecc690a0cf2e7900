package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// ProgressPrinter shows runs' progress: a bar redrawn in place on a
// terminal, plain lines (one every few seconds and at each phase) when
// the output is a file or a pipe, so CI logs stay readable. Its Update
// method fits Options.Progress. The zero value is not usable; see
// NewProgressPrinter.
type ProgressPrinter struct {
	w     io.Writer
	tty   bool
	every time.Duration

	mu        sync.Mutex
	prefix    string
	lastPhase string
	lastLine  time.Time
	drawn     bool
	faults    int
}

// NewProgressPrinter returns a printer writing to w, drawing a bar when w
// is a terminal.
func NewProgressPrinter(w io.Writer) *ProgressPrinter {
	return &ProgressPrinter{w: w, tty: isTerminal(w), every: 5 * time.Second}
}

// isTerminal reports whether w is a character device (a terminal), by
// the file mode alone: no ioctl, no extra dependency.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// SetPrefix sets what each line starts with, such as "[3/22]".
func (p *ProgressPrinter) SetPrefix(s string) {
	p.mu.Lock()
	p.prefix = s
	p.mu.Unlock()
}

// Update shows pr.
func (p *ProgressPrinter) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	phaseChanged := pr.Phase != p.lastPhase
	p.lastPhase = pr.Phase
	name := fmt.Sprintf("%s%s n=%d", p.prefix, pr.Strategy, pr.Nodes)
	for ; p.faults < len(pr.Faults); p.faults++ {
		ev := pr.Faults[p.faults]
		msg := fmt.Sprintf("%s  fault %s at %.1fs (took %.1fs)", name, ev.Fault, ev.AtS, ev.DoneS-ev.AtS)
		if ev.Error != "" {
			msg += ": " + ev.Error
		}
		p.line(msg)
	}
	if pr.Phase != "load" {
		if phaseChanged {
			p.faults = 0
			p.line(name + "  " + pr.Phase)
		}
		return
	}
	stats := fmt.Sprintf("%5.1fs/%.0fs  %6d req  %5.0f rps  200 %5.1f%%  401 %5.1f%%  failed %d",
		pr.Elapsed.Seconds(), pr.Duration.Seconds(), pr.Requests, rate(pr.Requests, pr.Elapsed),
		pct(pr.OK, pr.Requests), pct(pr.Unauthorized, pr.Requests), pr.Failed)
	if p.tty {
		const width = 24
		done := min(int(float64(width)*pr.Elapsed.Seconds()/max(pr.Duration.Seconds(), 1e-9)), width)
		bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
		fmt.Fprintf(p.w, "\r\x1b[K%s [%s] %s", name, bar, stats)
		p.drawn = true
		return
	}
	if phaseChanged || time.Since(p.lastLine) >= p.every {
		p.line(name + "  " + stats)
	}
}

// Done ends a bar in progress with a newline.
func (p *ProgressPrinter) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// line prints one whole line, clearing a bar first. The caller holds p.mu.
func (p *ProgressPrinter) line(s string) {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, s)
	p.lastLine = time.Now()
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
