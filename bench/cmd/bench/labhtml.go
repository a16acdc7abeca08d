package main

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"

	"github.com/caspaxos/caspaxos/internal/netlab"
)

var palette = []string{"#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1"}

const labStyle = `<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td.l{text-align:left}
.good{background:#e6f4e6}.bad{background:#fbe7e7}h2{margin-top:32px}.note{color:#555;font-size:13px;max-width:60em}</style>`

func isolationHTML(w io.Writer, rep *isolationReport) error {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>isolating one node: caspaxos vs etcd</title>` + labStyle + `</head><body>`)
	fmt.Fprintf(&b, `<h1>Isolating one node: caspaxos vs etcd</h1><p class="note">%d CPUs (%s), Linux %s. Three members each, separate processes on 127.0.0.1, every directed peer link through a proxy. One client per node and loop, each connected only to its own node, doing read-modify-write of its own key; operation deadline %s. %.0f s steady, then one node's peer links cut (%s) for %.0f s, healed, %.0f s more (caspaxos: each node in turn; etcd: the leader). Load average: %s. Started %s.</p>`,
		rep.Host.CPUs, html.EscapeString(rep.Host.CPU), html.EscapeString(rep.Host.Kernel), rep.OpTimeout, rep.SteadyS, rep.CutMode, rep.CutS, rep.AfterS,
		html.EscapeString(strings.Join(rep.Load, "; ")), rep.Started.Format("2006-01-02 15:04:05 MST"))
	b.WriteString(`<table><tr><th>system</th><th>loop</th><th>isolated</th><th>complete unavailability ms (this loop's clients)</th><th>complete unavailability ms (all clients)</th><th>max gap, connected clients ms</th><th>isolated: first success after heal ms</th><th>isolated: half rate after heal ms</th><th>linearizable</th></tr>`)
	for _, run := range rep.Runs {
		if run.Failure != "" {
			fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l bad" colspan="8">%s</td></tr>`, run.System, html.EscapeString(run.Failure))
			continue
		}
		for i, rd := range run.Rounds {
			fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l">%s</td><td class="l">%s</td><td%s>%.0f</td><td%s>%.0f</td><td%s>%.0f</td><td>%.0f</td><td%s>%.0f</td><td class="l%s">%s</td></tr>`,
				run.System, run.Loop, nodeName(run.System, rd.Isolated),
				goodIf(run.System == "caspaxos", rd.CompleteUnavailabilityMs == 0), rd.CompleteUnavailabilityMs,
				goodIf(run.System == "caspaxos", run.SystemUnavailabilityMs[i] == 0), run.SystemUnavailabilityMs[i],
				goodIf(run.System == "caspaxos", rd.MaxGapConnectedMs <= 500), rd.MaxGapConnectedMs,
				rd.RecoveryMs, goodIf(run.System == "caspaxos", rd.FullRateMs >= 0 && rd.FullRateMs <= 1000), rd.FullRateMs,
				map[bool]string{true: " good", false: " bad"}[run.Linearizable == "ok"], run.Linearizable)
		}
	}
	b.WriteString(`</table><p class="note">Targets (caspaxos): complete unavailability 0 ms; clients of connected nodes: no gap above 500 ms; the isolated node's client at full rate within 1 s of the heal (here: half its rate before the first cut, in a 100 ms bucket).</p>`)
	for _, run := range rep.Runs {
		if run.Failure != "" {
			continue
		}
		fmt.Fprintf(&b, `<h2>%s, %s</h2>`, run.System, run.Loop)
		b.WriteString(timelineChart(run).svg())
	}
	b.WriteString(`</body></html>` + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func goodIf(judged, ok bool) string {
	switch {
	case !judged:
		return ""
	case ok:
		return ` class="good"`
	}
	return ` class="bad"`
}

// timelineChart draws successes per 100 ms, one line per client; ticks
// mark the cuts and heals.
func timelineChart(run *isolRun) chart {
	ch := chart{Title: fmt.Sprintf("%s %s: successes per 100 ms", run.System, run.Loop), XLabel: "seconds",
		YLabel: "successes / 100 ms", Width: 1100, NoDots: true}
	ch.XTicks = append(ch.XTicks, tick{At: 0, Label: "0"}, tick{At: run.LengthS, Label: fmt.Sprintf("%.0f", run.LengthS)})
	for _, rd := range run.Cuts {
		ch.XTicks = append(ch.XTicks, tick{At: rd.Cut.Seconds(), Label: "cut " + nodeName(run.System, rd.Isolated)},
			tick{At: rd.Heal.Seconds(), Label: "heal"})
	}
	names := make([]string, 0, len(run.Timelines))
	for n := range run.Timelines {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		s := series{Name: n, Color: palette[i%len(palette)]}
		for b, v := range run.Timelines[n] {
			s.Pts = append(s.Pts, xy{X: float64(b) * netlab.Bucket.Seconds(), Y: float64(v)})
		}
		ch.Series = append(ch.Series, s)
	}
	return ch
}
