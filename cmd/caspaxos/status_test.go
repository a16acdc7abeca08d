package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/server/status"
)

// fakeStatusNode serves GET /v1/members and GET /v1/status with fixed
// answers, counting the status calls.
func fakeStatusNode(t *testing.T, members func() client.Membership, self status.Node, calls *atomic.Int32) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(members())
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(self)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// TestStatusClusterRows: --cluster takes the newest membership of those
// the endpoints answer, fills each member's client address from any of
// them, asks each distinct address once, and gives an error row to a
// member without an address and to one whose address answers as another
// node.
func TestStatusClusterRows(t *testing.T) {
	var callsA, callsB atomic.Int32
	var addrA, addrB string
	a := fakeStatusNode(t, func() client.Membership {
		return client.Membership{ConfigVersion: 5, Members: []client.Member{
			{Name: "a", ID: 1, ClientAddr: addrA}, {Name: "b", ID: 2}, {Name: "c", ID: 3}, {Name: "d", ID: 4, ClientAddr: addrA},
		}}
	}, status.Node{Name: "a", ID: 1}, &callsA)
	b := fakeStatusNode(t, func() client.Membership {
		return client.Membership{ConfigVersion: 4, Members: []client.Member{
			{Name: "a", ID: 1}, {Name: "b", ID: 2, ClientAddr: addrB}, {Name: "c", ID: 3},
		}}
	}, status.Node{Name: "b", ID: 2}, &callsB)
	addrA, addrB = strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://")

	o := &clientOptions{}
	eps := []string{addrB, addrA}
	n, err := o.nodeHTTP("", "", eps)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	ctx := context.Background()
	rows, err := memberRows(ctx, n, eps)
	if err != nil {
		t.Fatal(err)
	}
	err = collectStatus(ctx, n, rows, "members")
	if err == nil || !strings.Contains(err.Error(), "2 of 4 members did not answer") {
		t.Fatalf("collectStatus: %v, want 2 of 4 members did not answer", err)
	}
	want := []struct {
		endpoint, member, name, errPart string
	}{
		{addrA, "a", "a", ""},
		{addrB, "b", "b", ""},
		{"", "c", "", "no client address known for c"},
		{addrA, "d", "", "answers as a (ID 1), not as member d (ID 4)"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		name := ""
		if r.Node != nil {
			name = r.Name
		}
		if r.Endpoint != w.endpoint || r.Member != w.member || r.MemberID != uint64(i+1) || name != w.name ||
			(w.errPart == "") != (r.Error == "") || !strings.Contains(r.Error, w.errPart) {
			t.Errorf("row %d: %+v (node %+v), want %+v", i, r, r.Node, w)
		}
	}
	if callsA.Load() != 1 || callsB.Load() != 1 {
		t.Errorf("status asked %d times of a and %d of b, want once each", callsA.Load(), callsB.Load())
	}

	var out strings.Builder
	if err := writeStatusTable(&out, rows); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); len(lines) != 5 ||
		!strings.HasPrefix(lines[3], "-  ") || !strings.Contains(lines[3], " c ") || !strings.Contains(lines[3], " 3 ") {
		t.Fatalf("table:\n%s", out.String())
	}
}
