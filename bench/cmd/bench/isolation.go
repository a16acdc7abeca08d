package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caspaxos/caspaxos/internal/faultproxy"
	"github.com/caspaxos/caspaxos/internal/netlab"
)

// isolationOptions are the isolation command's flags.
type isolationOptions struct {
	labFlags
	steady, cut, after time.Duration
	mode               string
	nodes              string
}

// isolationReport is isolation.json.
type isolationReport struct {
	runHeader
	SteadyS   float64    `json:"steady_seconds"`
	CutS      float64    `json:"cut_seconds"`
	AfterS    float64    `json:"after_seconds"`
	CutMode   string     `json:"cut_mode"`
	OpTimeout string     `json:"op_timeout"`
	Runs      []*isolRun `json:"runs"`
}

// isolRun is one system's run: its rounds, per loop kind.
type isolRun struct {
	System       string               `json:"system"`
	Loop         netlab.Loop          `json:"loop"`
	Rounds       []netlab.RoundResult `json:"rounds"`
	Cuts         []netlab.Round       `json:"schedule"`
	Timelines    map[string][]int     `json:"timelines"` // successes per 100 ms, per client
	Successes    map[string]int       `json:"successes"`
	Errors       map[string]int       `json:"errors"`
	Linearizable string               `json:"linearizable"`
	Final        map[string]string    `json:"final_reads"`
	// SystemUnavailabilityMs is, per round, the complete unavailability
	// over every client of the system (both loops).
	SystemUnavailabilityMs []float64 `json:"system_complete_unavailability_ms"`
	Failure                string    `json:"failure,omitempty"`
	LengthS                float64   `json:"length_seconds"`
}

func runIsolation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &isolationOptions{}
	fs := flag.NewFlagSet("bench isolation", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs)
	fs.DurationVar(&o.steady, "steady", 10*time.Second, "steady load before the first cut")
	fs.DurationVar(&o.cut, "cut", 20*time.Second, "how long a node stays isolated")
	fs.DurationVar(&o.after, "after", 10*time.Second, "load after each heal")
	fs.StringVar(&o.mode, "cut-mode", "hang", "hang (a partition: connections stall) or reset (connections reset, new ones refused)")
	fs.StringVar(&o.nodes, "nodes", "1,2,3", "caspaxos: the nodes to isolate, in turn (etcd: its leader)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	systems, err := o.systemList()
	if err != nil {
		return err
	}
	mode := faultproxy.Hang
	switch o.mode {
	case "hang":
	case "reset":
		mode = faultproxy.Reset
	default:
		return fmt.Errorf("-cut-mode %q: want hang or reset", o.mode)
	}
	var nodes []int
	for _, s := range strings.Split(o.nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 3 {
			return fmt.Errorf("-nodes %q: want numbers 1 to 3", o.nodes)
		}
		nodes = append(nodes, n-1)
	}
	r, err := o.runner(ctx, stderr)
	if err != nil {
		return err
	}
	rep := &isolationReport{runHeader: startRun(), SteadyS: o.steady.Seconds(),
		CutS: o.cut.Seconds(), AfterS: o.after.Seconds(), CutMode: o.mode, OpTimeout: o.opTimeout.String()}
	for _, s := range systems {
		rep.Load = append(rep.Load, s+" start: "+loadAvg())
		fmt.Fprintf(stderr, "isolation: %s ...\n", s)
		runs := isolateSystem(ctx, r, o, s, nodes, mode)
		rep.Runs = append(rep.Runs, runs...)
		rep.Load = append(rep.Load, s+" end: "+loadAvg())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep.Finished = time.Now()
	printIsolation(stdout, rep)
	if err := writeLab(o.out, "isolation", rep, func(w io.Writer) error { return isolationHTML(w, rep) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(o.out, "isolation.json"), filepath.Join(o.out, "isolation.html"))
	for _, run := range rep.Runs {
		if run.Failure != "" || run.Linearizable != "ok" {
			return errors.New("a run failed or its history is not known to be linearizable")
		}
	}
	return nil
}

// isolateSystem runs one cluster through every round and returns one run
// per loop kind.
func isolateSystem(ctx context.Context, r *runner, o *isolationOptions, system string, nodes []int, mode faultproxy.CutMode) []*isolRun {
	fail := func(err error) []*isolRun { return []*isolRun{{System: system, Failure: err.Error()}} }
	start := r.startCaspaxosLab
	if system == "etcd" {
		start = r.startEtcdLab
	}
	l, err := start(func(*netlab.Mesh) {})
	if err != nil {
		return fail(err)
	}
	failed := true
	defer func() { l.close(o.keep || failed) }()
	clients, closeClients, err := labClients(system, l.clients, "iso")
	if err != nil {
		return fail(err)
	}
	defer closeClients()
	if err := labReady(ctx, l, clients); err != nil {
		return fail(err)
	}
	if system == "etcd" {
		lead, _, err := etcdLeader(ctx, l.clients)
		if err != nil {
			return fail(err)
		}
		nodes = []int{lead}
	}
	var rounds []netlab.Round
	at := o.steady
	for _, n := range nodes {
		rounds = append(rounds, netlab.Round{Isolated: n, Cut: at, Heal: at + o.cut, End: at + o.cut + o.after})
		at += o.cut + o.after
	}
	length := at
	t0 := time.Now().Add(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		netlab.Run(ctx, clients, t0, t0.Add(length), netlab.Options{OpTimeout: o.opTimeout})
	}()
	for _, rd := range rounds {
		if !sleepUntil(ctx, t0.Add(rd.Cut)) {
			break
		}
		r.progress.line(fmt.Sprintf("  %s: isolating %s for %v", system, nodeName(system, rd.Isolated), o.cut))
		l.mesh.Isolate(rd.Isolated, mode)
		sleepUntil(ctx, t0.Add(rd.Heal))
		l.mesh.Heal()
		r.progress.line(fmt.Sprintf("  %s: healed", system))
	}
	l.mesh.Heal()
	<-done
	final := map[string]string{}
	for i, c := range clients {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		final[c.Name] = c.Final(fctx, i, netlab.Options{OpTimeout: 5 * time.Second}).String()
		cancel()
	}
	lin := checkHistory(clients, o.checkTimeout)
	if err := l.alive(); err != nil {
		return fail(err)
	}
	failed = lin != "ok"
	var overall []float64
	for _, rd := range rounds {
		overall = append(overall, netlab.Analyze(clients, rd, time.Second, rounds[0].Cut).CompleteUnavailabilityMs)
	}
	var runs []*isolRun
	for _, loop := range []netlab.Loop{netlab.LoopIncr, netlab.LoopGetPut} {
		var cs []*netlab.Client
		for _, c := range clients {
			if c.Loop == loop {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			continue
		}
		run := &isolRun{System: system, Loop: loop, Cuts: rounds, Timelines: map[string][]int{}, Successes: map[string]int{},
			Errors: map[string]int{}, Final: map[string]string{}, Linearizable: lin, LengthS: length.Seconds(), SystemUnavailabilityMs: overall}
		for _, rd := range rounds {
			run.Rounds = append(run.Rounds, netlab.Analyze(cs, rd, time.Second, rounds[0].Cut))
		}
		for _, c := range cs {
			run.Timelines[c.Name] = c.Timeline(length)
			run.Successes[c.Name], run.Errors[c.Name] = c.Counts()
			run.Final[c.Name] = final[c.Name]
		}
		runs = append(runs, run)
	}
	return runs
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func printIsolation(w io.Writer, rep *isolationReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tloop\tisolated\tcomplete unavailability ms (loop / all clients)\tmax gap, connected clients ms\tisolated: first success after heal ms\tisolated: half rate after heal ms\tsuccesses\terrors\tlinearizable\t")
	for _, run := range rep.Runs {
		if run.Failure != "" {
			fmt.Fprintf(tw, "%s\t\t\tFAILED: %s\t\t\t\t\t\t\t\n", run.System, firstLine(run.Failure))
			continue
		}
		succ, errs := 0, 0
		for _, n := range run.Successes {
			succ += n
		}
		for _, n := range run.Errors {
			errs += n
		}
		for i, rd := range run.Rounds {
			s, e := "", ""
			if i == 0 {
				s, e = strconv.Itoa(succ), strconv.Itoa(errs)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f / %.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t\n", run.System, run.Loop, nodeName(run.System, rd.Isolated),
				rd.CompleteUnavailabilityMs, run.SystemUnavailabilityMs[i], rd.MaxGapConnectedMs, rd.RecoveryMs, rd.FullRateMs, s, e, run.Linearizable)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "load average: %s\n", strings.Join(rep.Load, "; "))
}

// writeLab writes NAME.json and NAME.html into dir.
func writeLab(dir, name string, v any, html func(io.Writer) error) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name+".html"))
	if err != nil {
		return err
	}
	if err := html(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
