package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caspaxos/caspaxos/internal/benchload"
)

// report is everything a run measured; it is results.json.
type report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     hostInfo  `json:"host"`
	Settings settings  `json:"settings"`
	Systems  []string  `json:"systems"`
	Cells    []*cell   `json:"cells"`
}

type hostInfo struct {
	CPUs   int    `json:"cpus"`
	GoOS   string `json:"goos"`
	GoArch string `json:"goarch"`
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
}

type settings struct {
	DurationSeconds float64 `json:"duration_seconds"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	Conns           int     `json:"conns"`
	Repeat          int     `json:"repeat"`
	Keys            int     `json:"keys"`
	ValueBytes      int     `json:"value_bytes"`
	// Mode is how caspaxos was driven (-mode): grpc (the Go client), http
	// (the HTTP API over HTTP/1.1, reported as caspaxos-http), h2c (over
	// HTTP/2 cleartext, caspaxos-h2c), a list of them, or both.
	Mode string `json:"mode"`
	// EtcdClients is where etcd's clients connected (-etcd-clients):
	// leader, or spread over the members.
	EtcdClients string `json:"etcd_clients"`
	// TLS: both systems served TLS on both ports (-tls).
	TLS bool `json:"tls"`
	// EtcdHTTPOnClientPort: with TLS, etcd served gRPC and HTTP on one
	// port (-etcd-http-on-client-port).
	EtcdHTTPOnClientPort bool `json:"etcd_http_on_client_port,omitempty"`
}

// cell is one workload at one number of clients, on every system.
type cell struct {
	Workload benchload.Workload       `json:"workload"`
	Clients  int                      `json:"clients"`
	Systems  map[string]*systemResult `json:"systems"`
	// Ratios of caspaxos to etcd (0 if either is missing); of the first
	// HTTP run (caspaxos-http, else caspaxos-h2c) when caspaxos ran
	// through HTTP only.
	OpsRatio float64 `json:"ops_ratio"`
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
	// Ratios holds the same ratios for every caspaxos system of the cell.
	Ratios map[string]ratios `json:"ratios,omitempty"`
}

// ratios are one caspaxos system's ratios to etcd in a cell.
type ratios struct {
	Ops float64 `json:"ops"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// systemResult is one system's run of a cell (the median of the repeats).
type systemResult struct {
	System string `json:"system"`
	*benchload.Result
	CPUSeconds     float64            `json:"cpu_seconds"`       // cluster processes, measured window
	CPUMicrosPerOp float64            `json:"cpu_micros_per_op"` // CPUSeconds per successful op
	PeakRSSMiB     float64            `json:"peak_rss_mib"`      // largest VmHWM of the members
	Counters       map[string]float64 `json:"counters,omitempty"`
	Spectrum       []point            `json:"spectrum,omitempty"`
	RunsOpsPerSec  []float64          `json:"runs_ops_per_sec,omitempty"`
	Failure        string             `json:"failure,omitempty"`
}

// point is one point of a latency distribution.
type point struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// thisHost describes the machine a run is on, for every report.
// runHeader is what every subcommand's report starts with: when it ran,
// on what, and the load averages around each system's run (eachSystem).
type runHeader struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     hostInfo  `json:"host"`
	Load     []string  `json:"load_average"`
}

// startRun is a report's header as its run starts.
func startRun() runHeader { return runHeader{Started: time.Now(), Host: thisHost()} }

func thisHost() hostInfo {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return hostInfo{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH,
		Kernel: strings.TrimSpace(string(kernel)), CPU: cpuModel()}
}

// eachSystem runs run for each system of the comma-separated list (etcd,
// caspaxos), noting the load average before and after each in load, and
// stops at an unknown system or once ctx ends.
func eachSystem(ctx context.Context, systems string, load *[]string, run func(system string)) error {
	for _, s := range strings.Split(systems, ",") {
		if s != "etcd" && s != "caspaxos" {
			return fmt.Errorf("unknown system %q (want etcd, caspaxos)", s)
		}
		*load = append(*load, s+" before: "+loadAverage())
		run(s)
		*load = append(*load, s+" after: "+loadAverage())
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes v, indented, to dir/name and says so on stdout.
func writeJSON(stdout io.Writer, dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", path)
	return nil
}

func newReport(o *options, systems []string) *report {
	return &report{
		Started: time.Now(), Systems: systems,
		Host: thisHost(),
		Settings: settings{DurationSeconds: o.duration.Seconds(), WarmupSeconds: o.warmup.Seconds(),
			Conns: o.conns, Repeat: o.repeat, Keys: 10000, ValueBytes: 256, Mode: o.mode, EtcdClients: o.etcdClients, TLS: o.tls,
			EtcdHTTPOnClientPort: o.tls && o.etcdHTTPOnClientPort},
	}
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (s *systemResult) ok() bool { return s != nil && s.Failure == "" && s.Result != nil }

// failedOps is the number of failed operations (0 before the run).
func (s *systemResult) failedOps() uint64 {
	if s.Result == nil {
		return 0
	}
	return s.Result.Errors
}

// brief is the one-line summary printed when a run ends.
func (s *systemResult) brief() string {
	if !s.ok() {
		return "FAILED: " + firstLine(s.Failure)
	}
	b := fmt.Sprintf("%9.0f ops/s  p50 %7.2fms  p99 %7.2fms  errors %d", s.OpsPerSec, s.P50, s.P99, s.Errors)
	if s.Counter != nil {
		b += fmt.Sprintf("  counter %d/%d ok=%v", s.Counter.Gain(), s.Counter.Successes, s.Counter.OK)
	}
	if s.WarmupErrors > 0 {
		b += fmt.Sprintf("  warm-up errors %d (%s)", s.WarmupErrors, firstLine(s.FirstWarmupError))
	}
	return b
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// median returns the run with the median ops/s (the lower middle for an even
// count), with every run's ops/s attached. Failed runs count as 0 ops/s.
func median(runs []*systemResult) *systemResult {
	sorted := slices.Clone(runs)
	opsOf := func(s *systemResult) float64 {
		if !s.ok() {
			return 0
		}
		return s.OpsPerSec
	}
	sort.SliceStable(sorted, func(i, j int) bool { return opsOf(sorted[i]) < opsOf(sorted[j]) })
	m := sorted[(len(sorted)-1)/2]
	m.RunsOpsPerSec = nil
	for _, r := range runs {
		m.RunsOpsPerSec = append(m.RunsOpsPerSec, opsOf(r))
	}
	return m
}

// caspaxosSystems are the names of caspaxos's runs, in the order the
// ratio columns show them.
var caspaxosSystems = []string{"caspaxos", caspaxosHTTP, caspaxosH2C, caspaxosEtcd}

// caspaxosOf is the caspaxos result a cell compares with etcd first: the
// Go client's, else HTTP/1.1's, else h2c's, else the etcd API's.
func (c *cell) caspaxosOf() *systemResult {
	for _, s := range caspaxosSystems {
		if k, ok := c.Systems[s]; ok {
			return k
		}
	}
	return nil
}

func (c *cell) ratios() {
	e := c.Systems["etcd"]
	if !e.ok() {
		return
	}
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, s := range caspaxosSystems {
		if k := c.Systems[s]; k.ok() {
			if c.Ratios == nil {
				c.Ratios = map[string]ratios{}
			}
			c.Ratios[s] = ratios{Ops: div(k.OpsPerSec, e.OpsPerSec), P50: div(k.P50, e.P50), P99: div(k.P99, e.P99)}
		}
	}
	if k := c.caspaxosOf(); k.ok() {
		r := c.Ratios[k.System]
		c.OpsRatio, c.P50Ratio, c.P99Ratio = r.Ops, r.P50, r.P99
	}
}

// ratioSystems are the caspaxos systems of r, in ratio column order.
func ratioSystems(r *report) []string {
	var out []string
	for _, s := range caspaxosSystems {
		if slices.Contains(r.Systems, s) {
			out = append(out, s)
		}
	}
	return out
}

// spectrum samples the distribution at 1 - 10^(-k/4) for k = 0..16 (0% to
// 99.99%) and at the maximum.
func spectrum(h *benchload.Histogram) []point {
	if h == nil || h.Count() == 0 {
		return nil
	}
	var out []point
	for k := 0; k <= 16; k++ {
		q := 1 - math.Pow(10, -float64(k)/4)
		out = append(out, point{Percentile: q * 100, Ms: float64(h.Quantile(q)) / 1e6})
	}
	return append(out, point{Percentile: 100, Ms: float64(h.Max()) / 1e6})
}

// write writes results.json and report.html into dir.
func (r *report) write(dir string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return err
	}
	if err := renderHTML(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printTable prints one row per cell: ops/s, p50 and p99 of each system in
// run order, the ratios of caspaxos to etcd, then errors, CPU, RSS and the
// counter check of each system joined by "/".
func printTable(w io.Writer, r *report) {
	if r.Settings.TLS {
		fmt.Fprintln(w, strings.TrimPrefix(tlsNote(r.Settings), " · "))
	}
	var initials []string
	for _, s := range r.Systems {
		initials = append(initials, initial(s))
	}
	per := strings.Join(initials, "/")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\tclients\t")
	for _, s := range r.Systems {
		fmt.Fprintf(tw, "%s ops/s\tp50 ms\tp99 ms\t", s)
	}
	var rinit []string
	for _, s := range ratioSystems(r) {
		rinit = append(rinit, initial(s))
	}
	rper := strings.Join(rinit, "/")
	fmt.Fprintf(tw, "ops × %[2]s\tp99 × %[2]s\terrors %[1]s\tcpu µs/op %[1]s\trss MiB %[1]s\tcheck\t\n", per, rper)
	ratioOf := func(c *cell, f func(ratios) float64) string {
		var parts []string
		for _, s := range ratioSystems(r) {
			parts = append(parts, ratio(f(c.Ratios[s])))
		}
		return strings.Join(parts, "/")
	}
	joined := func(c *cell, f func(*systemResult) float64) string {
		var parts []string
		for _, s := range r.Systems {
			parts = append(parts, num(c.Systems[s], f, "%.0f"))
		}
		return strings.Join(parts, "/")
	}
	for _, c := range r.Cells {
		fmt.Fprintf(tw, "%s\t%d\t", c.Workload, c.Clients)
		for _, s := range r.Systems {
			res := c.Systems[s]
			fmt.Fprintf(tw, "%s\t%s\t%s\t", num(res, func(s *systemResult) float64 { return s.OpsPerSec }, "%.0f"),
				num(res, func(s *systemResult) float64 { return s.P50 }, "%.2f"),
				num(res, func(s *systemResult) float64 { return s.P99 }, "%.2f"))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", ratioOf(c, func(x ratios) float64 { return x.Ops }), ratioOf(c, func(x ratios) float64 { return x.P99 }),
			joined(c, func(s *systemResult) float64 { return float64(s.Errors) }),
			joined(c, func(s *systemResult) float64 { return s.CPUMicrosPerOp }),
			joined(c, func(s *systemResult) float64 { return s.PeakRSSMiB }),
			check(c, r.Systems))
	}
	tw.Flush()
	for _, c := range r.Cells {
		for _, s := range r.Systems {
			if res := c.Systems[s]; res != nil && res.Failure != "" {
				fmt.Fprintf(w, "%s@%d %s failed: %s\n", c.Workload, c.Clients, s, firstLine(res.Failure))
			}
		}
	}
}

// initial abbreviates a system in the joined columns: e (etcd), c
// (caspaxos), h (caspaxos-http), h2 (caspaxos-h2c), ce (caspaxos-etcd).
func initial(system string) string {
	switch system {
	case "etcd":
		return "e"
	case caspaxosEtcd:
		return "ce"
	case caspaxosHTTP:
		return "h"
	case caspaxosH2C:
		return "h2"
	}
	return "c"
}

func num(s *systemResult, f func(*systemResult) float64, format string) string {
	if !s.ok() {
		return "-"
	}
	return fmt.Sprintf(format, f(s))
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

// check summarises the incr workload's counter checks of systems ("" elsewhere).
func check(c *cell, systems []string) string {
	if c.Workload != benchload.Incr {
		return ""
	}
	var parts []string
	for _, name := range systems {
		if s := c.Systems[name]; s.ok() && s.Counter != nil {
			v := "ok"
			if !s.Counter.OK {
				v = fmt.Sprintf("BAD %d≠%d", s.Counter.Gain(), s.Counter.Successes)
			}
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, "/")
}
