package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar on a terminal; elsewhere it
// prints only the finished lines.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	last int // length of the line drawn
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

// show replaces the current line (terminal only).
func (p *progress) show(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty {
		return
	}
	fmt.Fprintf(p.w, "\r%s%s", s, strings.Repeat(" ", max(0, p.last-len(s))))
	p.last = len(s)
}

// bar shows a phase's progress.
func (p *progress) bar(label, phase string, elapsed, total time.Duration, ops int64) {
	if total <= 0 {
		p.show(fmt.Sprintf("%s %-7s %d keys", label, phase, ops))
		return
	}
	const width = 20
	n := min(width, int(float64(width)*elapsed.Seconds()/total.Seconds()))
	p.show(fmt.Sprintf("%s %-7s [%s%s] %4.1f/%.0fs %d ops", label, phase,
		strings.Repeat("#", n), strings.Repeat(".", width-n), elapsed.Seconds(), total.Seconds(), ops))
}

// line prints a finished line.
func (p *progress) line(s string) {
	p.clear()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

// clear erases the current line.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.last))
		p.last = 0
	}
}
