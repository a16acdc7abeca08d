package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/netlab"
)

func TestLabReports(t *testing.T) {
	iso := &isolationReport{Runs: []*isolRun{
		{System: "caspaxos", Loop: netlab.LoopIncr, LengthS: 3, Linearizable: "ok",
			Cuts:                   []netlab.Round{{Isolated: 0, Cut: time.Second, Heal: 2 * time.Second, End: 3 * time.Second}},
			Rounds:                 []netlab.RoundResult{{Isolated: 0, MaxGapConnectedMs: 300}},
			SystemUnavailabilityMs: []float64{0},
			Timelines:              map[string][]int{"n1 incr": {5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 5}}},
		{System: "etcd", Failure: "etcd: no leader known"},
	}}
	var b strings.Builder
	if err := isolationHTML(&b, iso); err != nil {
		t.Fatal(err)
	}
	printIsolation(&b, iso)
	if s := b.String(); !strings.Contains(s, "<svg") || !strings.Contains(s, "cut n1") || !strings.Contains(s, "no leader known") {
		t.Fatalf("isolation report lacks its chart or failure:\n%s", s)
	}
	wan := &wanReport{Checks: map[string]string{"caspaxos": "ok"}, Counters: map[string]float64{"caspaxos forwarded_total": 0},
		Rows: []wanRow{{Region: regions[0], System: "caspaxos", Loop: netlab.LoopIncr, Lat: netlab.Latency{N: 10, MeanMs: 25}, Target: 22}}}
	b.Reset()
	if err := wanHTML(&b, wan); err != nil {
		t.Fatal(err)
	}
	printWAN(&b, wan)
	if s := b.String(); !strings.Contains(s, "<svg") || !strings.Contains(s, "West US 2") {
		t.Fatalf("wan report:\n%s", s)
	}
}

func TestHexAddr(t *testing.T) {
	got := hexAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0x1F90})
	if got != "0100007F:1F90" {
		t.Fatalf("hexAddr = %s, want 0100007F:1F90 (as /proc/net/tcp writes it)", got)
	}
}
