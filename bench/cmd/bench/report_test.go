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
