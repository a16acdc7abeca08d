package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/caspaxos/caspaxos/internal/benchload"
)

// The report is one self-contained HTML file: the table and charts drawn as
// inline SVG, no scripts, nothing fetched.

func colorOf(system string) string {
	switch system {
	case "etcd":
		return "#4e79a7"
	case "caspaxos":
		return "#e15759"
	case caspaxosHTTP:
		return "#f28e2b"
	case caspaxosH2C:
		return "#b07aa1"
	case caspaxosEtcd:
		return "#9c755f"
	}
	return "#59a14f"
}

type xy struct{ X, Y float64 }

type series struct {
	Name  string
	Color string
	Dash  bool
	Pts   []xy
}

type tick struct {
	At    float64
	Label string
}

// chart is a line chart; X values are positions on the axis (ticks label
// them), Y is linear from 0 or logarithmic.
type chart struct {
	Title, XLabel, YLabel string
	LogY                  bool
	XTicks                []tick
	Series                []series
	// Width in pixels (default chartW); NoDots draws lines only (for
	// series of many points), thinner.
	Width  int
	NoDots bool
}

func (c chart) strokeWidth() float64 {
	if c.NoDots {
		return 1.2
	}
	return 2
}

const (
	chartW, chartH                 = 460, 290
	padL, padR, padT, padB float64 = 62, 22, 28, 44
)

func (c chart) svg() string {
	var b strings.Builder
	chartW := float64(chartW)
	if c.Width > 0 {
		chartW = float64(c.Width)
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%d" viewBox="0 0 %.0f %d" font-family="sans-serif" font-size="11">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" text-anchor="middle" font-size="13" font-weight="bold">%s</text>`, chartW/2, html.EscapeString(c.Title))
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, t := range c.XTicks {
		xmin, xmax = math.Min(xmin, t.At), math.Max(xmax, t.At)
	}
	for _, s := range c.Series {
		for _, p := range s.Pts {
			if c.LogY && p.Y <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
		}
	}
	if math.IsInf(ymax, -1) {
		b.WriteString(`<text x="50%" y="50%" text-anchor="middle">no data</text></svg>`)
		return b.String()
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	var yticks []tick
	var ylo, yhi float64
	if c.LogY {
		ylo, yhi = math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if yhi == ylo {
			yhi++
		}
		for e := ylo; e <= yhi; e++ {
			yticks = append(yticks, tick{At: e, Label: shortNum(math.Pow(10, e))})
		}
	} else {
		step := niceStep(ymax / 5)
		yhi = math.Ceil(ymax*1.05/step) * step
		for v := 0.0; v <= yhi+step/2; v += step {
			yticks = append(yticks, tick{At: v, Label: shortNum(v)})
		}
	}
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*(chartW-padL-padR) }
	py := func(y float64) float64 {
		if c.LogY {
			y = math.Log10(y)
		}
		return chartH - padB - (y-ylo)/(yhi-ylo)*(chartH-padT-padB)
	}
	pyTick := func(at float64) float64 { return chartH - padB - (at-ylo)/(yhi-ylo)*(chartH-padT-padB) }
	for _, t := range yticks {
		y := pyTick(t.At)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, padL, y, chartW-padR, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, t.Label)
	}
	for _, t := range c.XTicks {
		x := px(t.At)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, x, float64(padT), x, chartH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, chartH-padB+14, html.EscapeString(t.Label))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`, padL, padT, chartW-padL-padR, chartH-padT-padB)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, padL+(chartW-padL-padR)/2, chartH-8, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, padT+(chartH-padT-padB)/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		var pts []string
		for _, p := range s.Pts {
			if c.LogY && p.Y <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>`, strings.Join(pts, " "), s.Color, c.strokeWidth(), dash)
		for _, p := range pts {
			if c.NoDots {
				break
			}
			x, y, _ := strings.Cut(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, x, y, s.Color)
		}
		ly := padT + 12 + float64(i)*14
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`, padL+8, ly-4, padL+28, ly-4, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, padL+32, ly, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// renderHTML writes the report page.
func renderHTML(w io.Writer, r *report) error {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>caspaxos vs etcd</title><style>
body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td.l{text-align:left}
.good{background:#e6f4e6}.bad{background:#fbe7e7}.charts{display:flex;flex-wrap:wrap;gap:12px}
h2{margin-top:32px}.note{color:#555;font-size:13px;max-width:60em}</style></head><body>`)
	fmt.Fprintf(&b, `<h1>caspaxos vs etcd</h1><p class="note">%d CPUs (%s), Linux %s · %.0f s measured per cell after %.0f s warm-up · %d connections per system · %d run(s) per cell, median shown · %d keys, %d-byte values · three members each, separate processes on 127.0.0.1, real fsync, a fresh cluster per cell and system%s. Started %s.</p>`,
		r.Host.CPUs, html.EscapeString(r.Host.CPU), html.EscapeString(r.Host.Kernel),
		r.Settings.DurationSeconds, r.Settings.WarmupSeconds, r.Settings.Conns, r.Settings.Repeat, r.Settings.Keys, r.Settings.ValueBytes,
		tlsNote(r.Settings)+etcdNote(r.Settings), r.Started.Format("2006-01-02 15:04:05 MST"))
	writeHTMLTable(&b, r)
	for _, wl := range workloadsOf(r) {
		cells := cellsOf(r, wl)
		fmt.Fprintf(&b, `<h2>%s</h2><div class="charts">`, html.EscapeString(string(wl)))
		var ticks []tick
		for i, c := range cells {
			ticks = append(ticks, tick{At: float64(i), Label: strconv.Itoa(c.Clients)})
		}
		tput := chart{Title: string(wl) + ": throughput", XLabel: "clients", YLabel: "ops/s", XTicks: ticks}
		lat := chart{Title: string(wl) + ": latency p50 (dashed), p99", XLabel: "clients", YLabel: "ms", LogY: true, XTicks: ticks}
		cpu := chart{Title: string(wl) + ": cluster CPU per operation", XLabel: "clients", YLabel: "µs/op", LogY: true, XTicks: ticks}
		for _, s := range r.Systems {
			t := series{Name: s, Color: colorOf(s)}
			p50 := series{Name: s + " p50", Color: colorOf(s), Dash: true}
			p99 := series{Name: s + " p99", Color: colorOf(s)}
			perOp := series{Name: s, Color: colorOf(s)}
			for i, c := range cells {
				if res := c.Systems[s]; res.ok() {
					t.Pts = append(t.Pts, xy{float64(i), res.OpsPerSec})
					p50.Pts = append(p50.Pts, xy{float64(i), res.P50})
					p99.Pts = append(p99.Pts, xy{float64(i), res.P99})
					if res.CPUMicrosPerOp > 0 {
						perOp.Pts = append(perOp.Pts, xy{float64(i), res.CPUMicrosPerOp})
					}
				}
			}
			tput.Series = append(tput.Series, t)
			lat.Series = append(lat.Series, p99, p50)
			cpu.Series = append(cpu.Series, perOp)
		}
		b.WriteString(tput.svg())
		b.WriteString(lat.svg())
		b.WriteString(cpu.svg())
		for _, c := range cells {
			b.WriteString(spectrumChart(r, c).svg())
		}
		b.WriteString(`</div>`)
	}
	b.WriteString(`</body></html>` + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// etcdNote is what the page's note says of how etcd was driven.
func etcdNote(s settings) string {
	switch s.EtcdClients {
	case "leader":
		return " · etcd's clients connected to its leader (etcd's advice for throughput)"
	case "spread":
		return " · etcd's clients spread over its members"
	}
	return ""
}

// tlsNote is what the page's note says of TLS.
func tlsNote(s settings) string {
	switch {
	case s.TLS && s.EtcdHTTPOnClientPort:
		return " · TLS on the client and peer ports of both systems, client certificates required on both; etcd's HTTP API on its client port (gRPC through net/http)"
	case s.TLS:
		return " · TLS on the client and peer ports of both systems, client certificates required on both; etcd's HTTP API on a port of its own"
	}
	return " · no TLS"
}

// spectrumChart is a cell's latency distribution on a "nines" axis.
func spectrumChart(r *report, c *cell) chart {
	ch := chart{Title: fmt.Sprintf("%s, %d clients: latency distribution", c.Workload, c.Clients), XLabel: "percentile",
		YLabel: "ms", LogY: true, XTicks: []tick{{0, "0"}, {1, "90"}, {2, "99"}, {3, "99.9"}, {4, "99.99"}}}
	for _, s := range r.Systems {
		res := c.Systems[s]
		if !res.ok() {
			continue
		}
		se := series{Name: s, Color: colorOf(s)}
		for _, p := range res.Spectrum {
			if p.Percentile >= 100 {
				continue
			}
			se.Pts = append(se.Pts, xy{-math.Log10(1 - p.Percentile/100), p.Ms})
		}
		ch.Series = append(ch.Series, se)
	}
	return ch
}

func writeHTMLTable(b *strings.Builder, r *report) {
	b.WriteString(`<table><tr><th>workload</th><th>clients</th>`)
	for _, s := range r.Systems {
		fmt.Fprintf(b, `<th>%[1]s ops/s</th><th>%[1]s p50 ms</th><th>%[1]s p90</th><th>%[1]s p99</th><th>%[1]s p99.9</th><th>%[1]s errors</th><th>%[1]s CPU µs/op</th><th>%[1]s peak RSS MiB</th>`, html.EscapeString(s))
	}
	for _, s := range ratioSystems(r) {
		fmt.Fprintf(b, `<th>%[1]s ÷ etcd ops/s</th><th>%[1]s ÷ etcd p99</th>`, html.EscapeString(s))
	}
	b.WriteString(`<th>counter</th></tr>`)
	for _, c := range r.Cells {
		fmt.Fprintf(b, `<tr><td class="l">%s</td><td>%d</td>`, html.EscapeString(string(c.Workload)), c.Clients)
		for _, s := range r.Systems {
			res := c.Systems[s]
			if !res.ok() {
				msg := "missing"
				if res != nil {
					msg = firstLine(res.Failure)
				}
				fmt.Fprintf(b, `<td colspan="8" class="bad l">%s</td>`, html.EscapeString(msg))
				continue
			}
			fmt.Fprintf(b, `<td>%.0f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%d</td><td>%.0f</td><td>%.0f</td>`,
				res.OpsPerSec, res.P50, res.P90, res.P99, res.P999, res.Errors, res.CPUMicrosPerOp, res.PeakRSSMiB)
		}
		for _, s := range ratioSystems(r) {
			x := c.Ratios[s]
			cls := ""
			if x.Ops > 0 {
				cls = ` class="bad"`
				if x.Ops >= 1 {
					cls = ` class="good"`
				}
			}
			fmt.Fprintf(b, `<td%s>%s</td><td>%s</td>`, cls, ratio(x.Ops), ratio(x.P99))
		}
		fmt.Fprintf(b, `<td>%s</td></tr>`, html.EscapeString(check(c, r.Systems)))
	}
	b.WriteString(`</table>`)
}

func workloadsOf(r *report) []benchload.Workload {
	var out []benchload.Workload
	for _, c := range r.Cells {
		if len(out) == 0 || out[len(out)-1] != c.Workload {
			out = append(out, c.Workload)
		}
	}
	return out
}

func cellsOf(r *report, w benchload.Workload) []*cell {
	var out []*cell
	for _, c := range r.Cells {
		if c.Workload == w {
			out = append(out, c)
		}
	}
	return out
}
