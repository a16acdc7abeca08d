package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caspaxos/caspaxos/internal/netlab"
)

// The paper's regions, one per node, and its round trips between them
// (Rystsov 2018, "Low latency"): half of each is the one-way delay.
var (
	regions = []string{"West US 2", "West Central US", "Southeast Asia"}
	wanRTT  = map[[2]int]time.Duration{
		{0, 1}: 21800 * time.Microsecond,
		{0, 2}: 169 * time.Millisecond,
		{1, 2}: 189200 * time.Microsecond,
	}
	// Mean read-modify-write latency per region in the paper (ms), leaders
	// in Southeast Asia; and the targets for caspaxos.
	paperEtcd    = []float64{679, 718, 339}
	paperGryadka = []float64{47, 47, 356}
	targetGetPut = []float64{44, 44, 338}
	targetIncr   = []float64{22, 22, 169}
)

const farRegion = 2 // Southeast Asia: etcd's leader

type wanOptions struct {
	labFlags
	duration, warmup                time.Duration
	etcdHeartbeatMs, etcdElectionMs int
	caspaxosVariants                string
}

// wanReport is wan.json.
type wanReport struct {
	runHeader
	Duration  float64            `json:"duration_seconds"`
	Warmup    float64            `json:"warmup_seconds"`
	RTTms     map[string]float64 `json:"rtt_ms"`
	EtcdFlags []string           `json:"etcd_flags"`
	Rows      []wanRow           `json:"rows"`
	Failures  []string           `json:"failures,omitempty"`
	Checks    map[string]string  `json:"linearizable"`
	Counters  map[string]float64 `json:"caspaxos_counters,omitempty"` // "<run> <counter>"
}

type wanRow struct {
	Region string         `json:"region"`
	System string         `json:"system"`
	Loop   netlab.Loop    `json:"loop"`
	Lat    netlab.Latency `json:"latency"`
	Errors int            `json:"errors"`
	Paper  float64        `json:"paper_mean_ms"`
	Target float64        `json:"target_ms,omitempty"`
	// QuorumRTT (caspaxos) is the round trip to the nearest quorum that the
	// region's node measured through the proxies during the run
	// (caspaxos_peer_rtt_seconds), and RTTs the mean latency in units of it:
	// what the protocol costs, apart from the proxies' own delay and jitter.
	QuorumRTT float64 `json:"quorum_rtt_ms,omitempty"`
	RTTs      float64 `json:"mean_in_quorum_rtts,omitempty"`
}

func runWAN(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &wanOptions{}
	fs := flag.NewFlagSet("bench wan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs)
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured time per system")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured load first")
	// etcd's tuning guide: heartbeat about the largest round trip between
	// members (0.5-1.5x), election timeout at least 10x the round trip.
	fs.IntVar(&o.etcdHeartbeatMs, "etcd-heartbeat-ms", 200, "etcd --heartbeat-interval")
	fs.IntVar(&o.etcdElectionMs, "etcd-election-ms", 2000, "etcd --election-timeout")
	fs.StringVar(&o.caspaxosVariants, "caspaxos-variants", "default", `caspaxos runs, comma-separated: "default", or serve flags such as "--read-timeout=400ms" (each a run of its own)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.opTimeout == time.Second {
		o.opTimeout = 10 * time.Second // WAN operations take up to a second
	}
	systems, err := o.systemList()
	if err != nil {
		return err
	}
	r, err := o.runner(ctx, stderr)
	if err != nil {
		return err
	}
	rep := &wanReport{runHeader: startRun(), Duration: o.duration.Seconds(), Warmup: o.warmup.Seconds(),
		RTTms: map[string]float64{}, Checks: map[string]string{}, Counters: map[string]float64{},
		EtcdFlags: []string{fmt.Sprintf("--heartbeat-interval=%d", o.etcdHeartbeatMs), fmt.Sprintf("--election-timeout=%d", o.etcdElectionMs)}}
	for p, d := range wanRTT {
		rep.RTTms[regions[p[0]]+" - "+regions[p[1]]] = float64(d) / 1e6
	}
	type runSpec struct{ system, variant string }
	var specs []runSpec
	for _, s := range systems {
		if s == "etcd" {
			specs = append(specs, runSpec{s, ""})
			continue
		}
		for _, v := range strings.Split(o.caspaxosVariants, ",") {
			if v = strings.TrimSpace(v); v == "default" {
				v = ""
			}
			specs = append(specs, runSpec{s, v})
		}
	}
	for _, sp := range specs {
		label := strings.TrimSpace(sp.system + " " + sp.variant)
		rep.Load = append(rep.Load, label+" start: "+loadAvg())
		fmt.Fprintf(stderr, "wan: %s ...\n", label)
		if err := wanSystem(ctx, r, o, sp.system, sp.variant, rep); err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", label, err))
		}
		rep.Load = append(rep.Load, label+" end: "+loadAvg())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep.Finished = time.Now()
	printWAN(stdout, rep)
	if err := writeLab(o.out, "wan", rep, func(w io.Writer) error { return wanHTML(w, rep) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(o.out, "wan.json"), filepath.Join(o.out, "wan.html"))
	if len(rep.Failures) > 0 {
		return errors.New(strings.Join(rep.Failures, "; "))
	}
	return nil
}

func setWAN(m *netlab.Mesh) {
	for p, d := range wanRTT {
		m.SetDelay(p[0], p[1], d/2)
	}
}

func wanSystem(ctx context.Context, r *runner, o *wanOptions, system, variant string, rep *wanReport) error {
	label := strings.TrimSpace(system + " " + variant)
	var l *labCluster
	var err error
	if system == "etcd" {
		l, err = r.startEtcdLab(setWAN, rep.EtcdFlags...)
	} else {
		var extra []string
		if variant != "" {
			extra = strings.Fields(variant)
		}
		l, err = r.startCaspaxosLab(setWAN, extra...)
	}
	if err != nil {
		return err
	}
	failed := true
	defer func() { l.close(o.keep || failed) }()
	clients, closeClients, err := labClients(system, l.clients, "wan")
	if err != nil {
		return err
	}
	defer closeClients()
	if err := labReady(ctx, l, clients); err != nil {
		return err
	}
	if system == "etcd" {
		if err := moveEtcdLeader(ctx, l.clients, farRegion); err != nil {
			return err
		}
	}
	var before map[string]float64
	var quorumRTT []float64
	t0 := time.Now()
	length := o.warmup + o.duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		netlab.Run(ctx, clients, t0, t0.Add(length), netlab.Options{OpTimeout: o.opTimeout})
	}()
	if sleepUntil(ctx, t0.Add(o.warmup)) && system == "caspaxos" {
		before = scrapeCounters(ctx, l.metrics, nil)
	}
	if system == "caspaxos" && sleepUntil(ctx, t0.Add(o.warmup+o.duration/2)) {
		quorumRTT = scrapeNearestRTT(ctx, l.metrics)
	}
	<-done
	if system == "caspaxos" && before != nil {
		for k, v := range diffCounters(before, scrapeCounters(ctx, l.metrics, nil)) {
			rep.Counters[label+" "+k] = v
		}
	}
	if system == "etcd" {
		if lead, _, err := etcdLeader(ctx, l.clients); err != nil || lead != farRegion {
			return fmt.Errorf("etcd's leader moved away from %s during the run (%d, %v)", regions[farRegion], lead, err)
		}
	}
	for i, c := range clients {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c.Final(fctx, i, netlab.Options{OpTimeout: 10 * time.Second})
		cancel()
	}
	lin := checkHistory(clients, o.checkTimeout)
	rep.Checks[label] = lin
	for _, c := range clients {
		row := wanRow{Region: regions[c.Node], System: label, Loop: c.Loop, Lat: c.Latency(o.warmup, length)}
		_, row.Errors = c.Counts()
		if system == "etcd" {
			row.Paper = paperEtcd[c.Node]
		} else {
			row.Paper = paperGryadka[c.Node]
			row.Target = targetGetPut[c.Node]
			if c.Loop == netlab.LoopIncr {
				row.Paper, row.Target = 0, targetIncr[c.Node]
			}
			if c.Node < len(quorumRTT) && quorumRTT[c.Node] > 0 {
				row.QuorumRTT = quorumRTT[c.Node]
				row.RTTs = row.Lat.MeanMs / row.QuorumRTT
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	if err := l.alive(); err != nil {
		return err
	}
	failed = lin != "ok"
	if failed {
		return fmt.Errorf("history %s", lin)
	}
	return nil
}

func printWAN(w io.Writer, rep *wanReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "region\tsystem\tloop\tmean ms\tp50 ms\tp99 ms\tops\terrors\tpaper mean ms\ttarget ms\tquorum RTT ms\tmean in RTTs\t")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Region, r.System, r.Loop, r.Lat.MeanMs, r.Lat.P50Ms, r.Lat.P99Ms,
			r.Lat.N, r.Errors, optMs(r.Paper), optMs(r.Target), optF(r.QuorumRTT, 1), optF(r.RTTs, 2))
	}
	tw.Flush()
	fmt.Fprintf(w, "linearizable: %v; etcd %s\n%s", rep.Checks, strings.Join(rep.EtcdFlags, " "), counterLines(rep))
	fmt.Fprintf(w, "load average: %s\n", strings.Join(rep.Load, "; "))
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

func optF(v float64, prec int) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func optMs(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func wanHTML(w io.Writer, rep *wanReport) error {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>WAN read-modify-write: caspaxos vs etcd</title>` + labStyle + `</head><body>`)
	fmt.Fprintf(&b, `<h1>Read-modify-write over a WAN: caspaxos vs etcd</h1><p class="note">%d CPUs (%s). Three members each, separate processes on 127.0.0.1, peer links through proxies adding half of the paper's round trips each way (West US 2 - West Central US 21.8 ms, West US 2 - Southeast Asia 169 ms, West Central US - Southeast Asia 189.2 ms). One client per region and loop, connected to its own node, changing its own key; %.0f s measured after %.0f s warm-up. etcd: leader moved to Southeast Asia, %s. caspaxos: default settings. Load average: %s. Started %s.</p>`,
		rep.Host.CPUs, html.EscapeString(rep.Host.CPU), rep.Duration, rep.Warmup, html.EscapeString(strings.Join(rep.EtcdFlags, " ")),
		html.EscapeString(strings.Join(rep.Load, "; ")), rep.Started.Format("2006-01-02 15:04:05 MST"))
	b.WriteString(`<table><tr><th>region</th><th>system</th><th>loop</th><th>mean ms</th><th>p50 ms</th><th>p99 ms</th><th>ops</th><th>errors</th><th>paper mean ms (etcd 3.2 / Gryadka)</th><th>target ms</th><th>quorum RTT ms (measured)</th><th>mean in quorum RTTs</th></tr>`)
	for _, r := range rep.Rows {
		cls := ""
		if r.Target > 0 {
			cls = goodIf(true, r.Lat.MeanMs <= r.Target*1.1)
		}
		fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l">%s</td><td class="l">%s</td><td%s>%.1f</td><td>%.1f</td><td>%.1f</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`,
			r.Region, r.System, r.Loop, cls, r.Lat.MeanMs, r.Lat.P50Ms, r.Lat.P99Ms, r.Lat.N, r.Errors, optMs(r.Paper), optMs(r.Target), optF(r.QuorumRTT, 1), optF(r.RTTs, 2))
	}
	fmt.Fprintf(&b, `</table><p class="note">Linearizable: %s. Targets: get+put at most two round trips to the nearest quorum, incr one (green: within 10%%). Quorum RTT: the round trip to the nearest quorum that the node measured through the proxies during the run (caspaxos_peer_rtt_seconds, the smallest of its last 16 probes); the last column is the mean in units of it.<br>%s</p>`,
		html.EscapeString(fmt.Sprint(rep.Checks)), strings.ReplaceAll(html.EscapeString(counterLines(rep)), "\n", "<br>"))
	ch := chart{Title: "mean read-modify-write latency per region", XLabel: "region", YLabel: "ms", Width: 700}
	for i, rg := range regions {
		ch.XTicks = append(ch.XTicks, tick{At: float64(i), Label: rg})
	}
	bySeries := map[string]*series{}
	var order []string
	for _, r := range rep.Rows {
		name := r.System + " " + string(r.Loop)
		s := bySeries[name]
		if s == nil {
			s = &series{Name: name, Color: palette[len(order)%len(palette)]}
			bySeries[name] = s
			order = append(order, name)
		}
		for i, rg := range regions {
			if rg == r.Region {
				s.Pts = append(s.Pts, xy{X: float64(i), Y: r.Lat.MeanMs})
			}
		}
	}
	for _, n := range order {
		ch.Series = append(ch.Series, *bySeries[n])
	}
	paper := series{Name: "paper: etcd 3.2", Color: "#888", Dash: true}
	gry := series{Name: "paper: Gryadka", Color: "#bbb", Dash: true}
	for i := range regions {
		paper.Pts = append(paper.Pts, xy{X: float64(i), Y: paperEtcd[i]})
		gry.Pts = append(gry.Pts, xy{X: float64(i), Y: paperGryadka[i]})
	}
	ch.Series = append(ch.Series, paper, gry)
	b.WriteString(ch.svg())
	b.WriteString(`</body></html>` + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// counterLines says, per caspaxos run, how many requests were forwarded to
// another node and how many accepts took the one-round-trip path.
func counterLines(rep *wanReport) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		if !strings.HasPrefix(r.System, "caspaxos") || seen[r.System] {
			continue
		}
		seen[r.System] = true
		fmt.Fprintf(&b, "%s: forwarded %.0f, one-round-trip accepts %.0f of %.0f, read rounds %.0f\n", r.System,
			rep.Counters[r.System+" forwarded_total"], rep.Counters[r.System+" one_round_trip_total"],
			rep.Counters[r.System+" accept_rounds_total"], rep.Counters[r.System+" read_rounds_total"])
	}
	return b.String()
}
