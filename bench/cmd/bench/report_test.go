package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/benchload"
)

func fakeResult(system string, ops float64, failure string) *systemResult {
	h := benchload.NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	return &systemResult{System: system, Failure: failure, Spectrum: spectrum(h), Result: &benchload.Result{
		Workload: benchload.Put, Clients: 16, Seconds: 1, Ops: uint64(ops), OpsPerSec: ops,
		P50: 0.5, P90: 0.9, P99: 0.99, P999: 1, Hist: h}}
}

func TestReportRendersWithMissingAndFailedRuns(t *testing.T) {
	r := &report{Systems: []string{"etcd", "caspaxos"}}
	for _, clients := range []int{1, 16} {
		c := &cell{Workload: benchload.Put, Clients: clients, Systems: map[string]*systemResult{
			"etcd": fakeResult("etcd", 1000, ""), "caspaxos": fakeResult("caspaxos", 2500, "")}}
		c.ratios()
		r.Cells = append(r.Cells, c)
	}
	r.Cells = append(r.Cells,
		&cell{Workload: benchload.Incr, Clients: 1, Systems: map[string]*systemResult{"etcd": fakeResult("etcd", 0, "cluster not ready")}})
	if r.Cells[0].OpsRatio != 2.5 {
		t.Errorf("ratio %v, want 2.5", r.Cells[0].OpsRatio)
	}
	var page, table bytes.Buffer
	if err := renderHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	printTable(&table, r)
	for _, want := range []string{"<svg", "put: throughput", "incr", "cluster not ready", "</html>"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(page.String(), "NaN") || strings.Contains(page.String(), "Inf") {
		t.Error("report has NaN or Inf coordinates")
	}
	if !strings.Contains(table.String(), "2.50") || !strings.Contains(table.String(), "incr@1 etcd failed") {
		t.Errorf("table:\n%s", table.String())
	}
}

func TestMedianPicksTheMiddleRunAndKeepsAll(t *testing.T) {
	runs := []*systemResult{fakeResult("etcd", 300, ""), fakeResult("etcd", 100, ""), fakeResult("etcd", 0, "boom"), fakeResult("etcd", 200, "")}
	m := median(runs)
	if m.OpsPerSec != 100 || len(m.RunsOpsPerSec) != 4 {
		t.Errorf("median %v of %v", m.OpsPerSec, m.RunsOpsPerSec)
	}
}

func TestStatFieldsSkipsTheCommandName(t *testing.T) {
	f := statFields("1234 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13")
	if len(f) < 13 || f[0] != "S" || f[11] != "11" || f[12] != "12" {
		t.Errorf("fields %q", f)
	}
}

func TestSystemsOfExpandsCaspaxosByMode(t *testing.T) {
	for _, tt := range []struct{ list, mode, want string }{
		{"etcd,caspaxos", "grpc", "etcd,caspaxos"},
		{"etcd,caspaxos", "http", "etcd,caspaxos-http"},
		{"caspaxos,etcd", "both", "caspaxos,caspaxos-http,etcd"},
		{"etcd", "both", "etcd"},
		{"etcd,caspaxos", "h2c", "etcd,caspaxos-h2c"},
		{"etcd,caspaxos", "http,h2c,grpc", "etcd,caspaxos-http,caspaxos-h2c,caspaxos"},
		{"etcd,caspaxos", "etcd", "etcd,caspaxos-etcd"},
		{"etcd,caspaxos", "grpc,etcd", "etcd,caspaxos,caspaxos-etcd"},
	} {
		got, err := systemsOf(tt.list, tt.mode)
		if err != nil || strings.Join(got, ",") != tt.want {
			t.Errorf("systemsOf(%q, %q) = %q, %v; want %q", tt.list, tt.mode, got, err, tt.want)
		}
	}
	if _, err := systemsOf("etcd,zookeeper", "grpc"); err == nil {
		t.Error("an unknown system was accepted")
	}
	for _, mode := range []string{"", "h3", "http,http", "both,h2c", "etcd,etcd"} {
		if _, err := systemsOf("etcd,caspaxos", mode); err == nil {
			t.Errorf("-mode %q was accepted", mode)
		}
	}
}

// With -mode both the table has a column group per system, and the ratio
// is the Go client's; with HTTP only it is HTTP's.
func TestReportLabelsTheHTTPMode(t *testing.T) {
	incr := func(system string, ops float64) *systemResult {
		r := fakeResult(system, ops, "")
		r.Counter = &benchload.CounterCheck{Successes: 5, Final: 5, OK: true}
		return r
	}
	both := &report{Systems: []string{"etcd", "caspaxos", caspaxosHTTP}}
	c := &cell{Workload: benchload.Incr, Clients: 4, Systems: map[string]*systemResult{
		"etcd": incr("etcd", 1000), "caspaxos": incr("caspaxos", 3000), caspaxosHTTP: incr(caspaxosHTTP, 2000)}}
	c.ratios()
	both.Cells = append(both.Cells, c)
	var table, page bytes.Buffer
	printTable(&table, both)
	for _, want := range []string{"caspaxos-http ops/s", "errors e/c/h", "3.00", "2000", "ok/ok/ok"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := renderHTML(&page, both); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "caspaxos-http ops/s") || !strings.Contains(page.String(), colorOf(caspaxosHTTP)) {
		t.Error("the page lacks the caspaxos-http columns or series")
	}
	httpOnly := &cell{Workload: benchload.Put, Clients: 4, Systems: map[string]*systemResult{
		"etcd": fakeResult("etcd", 1000, ""), caspaxosHTTP: fakeResult(caspaxosHTTP, 2000, "")}}
	httpOnly.ratios()
	if httpOnly.OpsRatio != 2 {
		t.Errorf("HTTP-only ratio %v, want 2", httpOnly.OpsRatio)
	}
}

// Every caspaxos run of a cell gets its ratios to etcd, in the table and
// on the page.
func TestReportRatiosPerCaspaxosSystem(t *testing.T) {
	r := &report{Systems: []string{"etcd", "caspaxos", caspaxosHTTP, caspaxosH2C}, Settings: settings{EtcdClients: "leader"}}
	c := &cell{Workload: benchload.Put, Clients: 64, Systems: map[string]*systemResult{
		"etcd": fakeResult("etcd", 1000, ""), "caspaxos": fakeResult("caspaxos", 3000, ""),
		caspaxosHTTP: fakeResult(caspaxosHTTP, 1500, ""), caspaxosH2C: fakeResult(caspaxosH2C, 2500, "")}}
	c.ratios()
	r.Cells = append(r.Cells, c)
	if c.OpsRatio != 3 || c.Ratios[caspaxosHTTP].Ops != 1.5 || c.Ratios[caspaxosH2C].Ops != 2.5 {
		t.Fatalf("ratios %v, %v", c.OpsRatio, c.Ratios)
	}
	var table, page bytes.Buffer
	printTable(&table, r)
	for _, want := range []string{"ops × c/h/h2", "3.00/1.50/2.50", "caspaxos-h2c ops/s", "cpu µs/op e/c/h/h2"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := renderHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"caspaxos-h2c ÷ etcd ops/s", "caspaxos-h2c CPU µs/op", ">2.50<", "cluster CPU per operation", "connected to its leader", colorOf(caspaxosH2C)} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// caspaxos driven by clientv3 through its etcd port (-mode etcd, bench
// etcdapi) gets its own ratio to etcd, and is the cell's ratio when it is
// the only caspaxos run.
func TestReportRatiosEtcdAPI(t *testing.T) {
	r := &report{Systems: []string{"etcd", "caspaxos", caspaxosEtcd}, Settings: settings{EtcdClients: "leader"}}
	c := &cell{Workload: benchload.Get, Clients: 64, Systems: map[string]*systemResult{
		"etcd": fakeResult("etcd", 1000, ""), "caspaxos": fakeResult("caspaxos", 3000, ""), caspaxosEtcd: fakeResult(caspaxosEtcd, 600, "")}}
	c.ratios()
	r.Cells = append(r.Cells, c)
	if c.OpsRatio != 3 || c.Ratios[caspaxosEtcd].Ops != 0.6 {
		t.Fatalf("ratios %v, %v", c.OpsRatio, c.Ratios)
	}
	var table bytes.Buffer
	printTable(&table, r)
	for _, want := range []string{"ops × c/ce", "3.00/0.60", "caspaxos-etcd ops/s", "cpu µs/op e/c/ce"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	only := &cell{Workload: benchload.Get, Clients: 64, Systems: map[string]*systemResult{
		"etcd": fakeResult("etcd", 1000, ""), caspaxosEtcd: fakeResult(caspaxosEtcd, 600, "")}}
	only.ratios()
	if only.OpsRatio != 0.6 {
		t.Errorf("etcd-API-only ratio %v, want 0.6", only.OpsRatio)
	}
}
