package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// consulCluster starts n nodes serving Consul's API (server/consulapi,
// docs/consul.md) and returns a Consul api client per node, once each
// answers a read.
func consulCluster(t *testing.T, n int) []*consul.Client {
	t.Helper()
	addrs := freeAddrs(t, n)
	startCluster(t, n, func(name string) []string {
		var i int
		fmt.Sscanf(name, "n%d", &i)
		return []string{"--consul-addr", addrs[i-1]}
	})
	clients := make([]*consul.Client, n)
	deadline := time.Now().Add(30 * time.Second)
	for i, addr := range addrs {
		cli, err := consul.NewClient(&consul.Config{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, _, err := cli.KV().Get("ready", nil)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered a read: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond) // polling a process we do not control
		}
		clients[i] = cli
	}
	return clients
}

// TestConsulAPI drives Consul's own Go client against a 3-node cluster:
// KV Put/Get/List/Keys/Delete/DeleteTree/CAS, flags, a blocking Get and
// List that return after a Put made at another node, a one-key Txn,
// api.Lock handed over between two nodes, an api.Lock holder told at once
// that its destroyed session lost the lock, api.Semaphore, a session's end
// waking a blocking Get, and the status endpoints.
func TestConsulAPI(t *testing.T) {
	c := consulCluster(t, 3)
	a, b := c[0].KV(), c[1].KV()

	if _, err := a.Put(&consul.KVPair{Key: "app/one", Value: []byte("1"), Flags: 42}, nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, meta, err := b.Get("app/one", nil)
	if err != nil || got == nil || string(got.Value) != "1" || got.Flags != 42 || got.ModifyIndex == 0 ||
		got.CreateIndex != got.ModifyIndex || meta.LastIndex != got.ModifyIndex || !meta.KnownLeader {
		t.Fatalf("Get at another node: %+v %+v %v", got, meta, err)
	}
	missing, meta, err := b.Get("app/none", nil)
	if err != nil || missing != nil || meta.LastIndex == 0 {
		t.Fatalf("Get of a missing key: %+v %+v %v", missing, meta, err)
	}

	// CAS: on a stale index it fails; on the current one it applies;
	// ModifyIndex 0 creates only.
	ok, _, err := a.CAS(&consul.KVPair{Key: "app/one", Value: []byte("x"), ModifyIndex: got.ModifyIndex + 100}, nil)
	if err != nil || ok {
		t.Fatalf("CAS on a stale index: %v %v", ok, err)
	}
	ok, _, err = a.CAS(&consul.KVPair{Key: "app/one", Value: []byte("2"), ModifyIndex: got.ModifyIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS on the index: %v %v", ok, err)
	}
	if ok, _, err = a.CAS(&consul.KVPair{Key: "app/one", Value: []byte("y")}, nil); err != nil || ok {
		t.Fatalf("CAS create-only of a live key: %v %v", ok, err)
	}
	if ok, _, err = a.CAS(&consul.KVPair{Key: "app/two", Value: []byte("two")}, nil); err != nil || !ok {
		t.Fatalf("CAS create-only of a new key: %v %v", ok, err)
	}
	after, _, err := b.Get("app/one", nil)
	if err != nil || string(after.Value) != "2" || after.Flags != 0 || after.CreateIndex != got.CreateIndex || after.ModifyIndex <= got.ModifyIndex {
		t.Fatalf("after CAS: %+v %v (before %+v)", after, err, got)
	}

	for _, k := range []string{"app/dir/x", "app/dir/y", "other"} {
		if _, err := a.Put(&consul.KVPair{Key: k, Value: []byte("v-" + k), Flags: uint64(len(k))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A listing carries each key's flags (from the acceptors' scans).
	list, listMeta, err := b.List("app/", nil)
	if err != nil || len(list) != 4 || list[0].Key != "app/dir/x" || list[0].Flags != 9 || list[3].Key != "app/two" || string(list[3].Value) != "two" {
		t.Fatalf("List: %+v %v", list, err)
	}
	keys, _, err := b.Keys("app/", "/", nil)
	if err != nil || fmt.Sprint(keys) != "[app/dir/ app/one app/two]" {
		t.Fatalf("Keys with a separator: %q %v", keys, err)
	}

	// A blocking List at the prefix's index returns after a Put under it
	// at another node (either of the two below; the index is this node's
	// own: it only has to move).
	listed := make(chan error, 1)
	go func() {
		l, m, err := b.List("app/", &consul.QueryOptions{WaitIndex: listMeta.LastIndex, WaitTime: 10 * time.Second})
		switch {
		case err != nil:
			listed <- err
		case len(l) < 4 || m.LastIndex == listMeta.LastIndex:
			listed <- fmt.Errorf("blocking List returned %d keys at index %d (before: %d)", len(l), m.LastIndex, listMeta.LastIndex)
		default:
			listed <- nil
		}
	}()
	// A blocking Get at the key's index returns after a Put at another node.
	cur, curMeta, err := b.Get("app/one", nil)
	if err != nil {
		t.Fatal(err)
	}
	// With no change it waits its whole wait and answers the same index.
	start := time.Now()
	same, sameMeta, err := b.Get("app/one", &consul.QueryOptions{WaitIndex: curMeta.LastIndex, WaitTime: 300 * time.Millisecond})
	if err != nil || same.ModifyIndex != cur.ModifyIndex || sameMeta.LastIndex != curMeta.LastIndex || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("blocking Get with no change: %+v %+v %v after %v", same, sameMeta, err, time.Since(start))
	}
	gotten := make(chan *consul.KVPair, 1)
	start = time.Now()
	go func() {
		p, _, err := b.Get("app/one", &consul.QueryOptions{WaitIndex: curMeta.LastIndex, WaitTime: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		gotten <- p
	}()
	// Let both queries start waiting; a Put before they do returns them at
	// once, which passes too (their index is stale then).
	time.Sleep(200 * time.Millisecond)
	if _, err := c[2].KV().Put(&consul.KVPair{Key: "app/one", Value: []byte("3")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c[2].KV().Put(&consul.KVPair{Key: "app/three", Value: []byte("3")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-gotten:
		if p == nil || string(p.Value) != "3" || p.ModifyIndex <= cur.ModifyIndex {
			t.Fatalf("blocking Get returned %+v", p)
		}
		if time.Since(start) > 8*time.Second {
			t.Fatalf("blocking Get returned after %v: at its wait's end, not on the change", time.Since(start))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("blocking Get never returned")
	}
	if err := <-listed; err != nil {
		t.Fatal(err)
	}

	// Txn on one key: a check and a set, then a failing check that rolls
	// back; two keys are refused with Consul's error shape.
	cur, _, err = a.Get("app/one", nil)
	if err != nil {
		t.Fatal(err)
	}
	txOK, txResp, _, err := a.Txn(consul.KVTxnOps{
		{Verb: consul.KVCheckIndex, Key: "app/one", Index: cur.ModifyIndex},
		{Verb: consul.KVSet, Key: "app/one", Value: []byte("4"), Flags: 9},
		{Verb: consul.KVGet, Key: "app/one"},
	}, nil)
	if err != nil || !txOK || len(txResp.Results) != 3 || string(txResp.Results[2].Value) != "4" || txResp.Results[2].Flags != 9 ||
		txResp.Results[0].ModifyIndex != cur.ModifyIndex || txResp.Results[1].ModifyIndex <= cur.ModifyIndex {
		t.Fatalf("Txn: %v %+v %v", txOK, txResp, err)
	}
	txOK, txResp, _, err = a.Txn(consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "app/one", Value: []byte("5")},
		{Verb: consul.KVCheckIndex, Key: "app/one", Index: cur.ModifyIndex},
	}, nil)
	if err != nil || txOK || len(txResp.Errors) != 1 || txResp.Errors[0].OpIndex != 1 {
		t.Fatalf("Txn with a stale check: %v %+v %v", txOK, txResp, err)
	}
	txOK, txResp, _, err = a.Txn(consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "app/one", Value: []byte("6")},
		{Verb: consul.KVSet, Key: "other", Value: []byte("6")},
	}, nil)
	if err != nil || txOK || len(txResp.Errors) != 1 || !bytes.Contains([]byte(txResp.Errors[0].What), []byte("one key")) {
		t.Fatalf("Txn on two keys: %v %+v %v", txOK, txResp, err)
	}
	if p, _, err := b.Get("app/one", nil); err != nil || string(p.Value) != "4" {
		t.Fatalf("after the refused transactions: %+v %v", p, err)
	}

	// Delete, DeleteCAS, DeleteTree.
	p, _, err := a.Get("app/two", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.DeleteCAS(&consul.KVPair{Key: "app/two", ModifyIndex: p.ModifyIndex + 1}, nil); err != nil || ok {
		t.Fatalf("DeleteCAS on a stale index: %v %v", ok, err)
	}
	if ok, _, err := a.DeleteCAS(&consul.KVPair{Key: "app/two", ModifyIndex: p.ModifyIndex}, nil); err != nil || !ok {
		t.Fatalf("DeleteCAS: %v %v", ok, err)
	}
	if _, err := a.Delete("other", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeleteTree("app/", nil); err != nil {
		t.Fatal(err)
	}
	if l, _, err := b.List("", nil); err != nil || len(l) != 0 {
		t.Fatalf("after deleting everything: %+v %v", l, err)
	}

	// api.Lock at two nodes: the second waits while the first holds the
	// key, and takes it once the first unlocks; LockIndex counts holders.
	lockA, err := c[0].LockKey("locks/leader")
	if err != nil {
		t.Fatal(err)
	}
	lostA, err := lockA.Lock(nil)
	if err != nil || lostA == nil {
		t.Fatalf("Lock at n1: %v", err)
	}
	held, _, err := b.Get("locks/leader", nil)
	if err != nil || held == nil || held.Session == "" || held.LockIndex != 1 {
		t.Fatalf("the held lock's key: %+v %v", held, err)
	}
	lockB, err := c[1].LockOpts(&consul.LockOptions{Key: "locks/leader", LockWaitTime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gotB := make(chan error, 1)
	go func() {
		lost, err := lockB.Lock(nil)
		if err == nil && lost == nil {
			err = fmt.Errorf("Lock at n2 returned no channel")
		}
		gotB <- err
	}()
	// n2's Lock has begun once its session exists; then it finds the key
	// held and waits on it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		sessions, _, err := c[2].Session().List(nil)
		if err == nil && len(sessions) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2's Lock made no session: %v %v", sessions, err)
		}
		time.Sleep(10 * time.Millisecond) // polling another goroutine's progress
	}
	select {
	case err := <-gotB:
		t.Fatalf("n2 took the lock n1 holds: %v", err)
	case <-lostA:
		t.Fatal("n1 lost its lock")
	default:
	}
	if err := lockA.Unlock(); err != nil {
		t.Fatalf("Unlock at n1: %v", err)
	}
	select {
	case err := <-gotB:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("n2 never took the lock n1 released")
	}
	held2, _, err := a.Get("locks/leader", nil)
	if err != nil || held2 == nil || held2.Session == "" || held2.Session == held.Session || held2.LockIndex != 2 {
		t.Fatalf("the lock's key after the hand-over: %+v %v (before %+v)", held2, err, held)
	}
	if err := lockB.Unlock(); err != nil {
		t.Fatalf("Unlock at n2: %v", err)
	}

	// A holder whose session ends (destroyed here, at another node) is
	// told at once: its monitor's blocking Get sees the key's Session
	// change and closes its lockCh.
	lockC, err := c[0].LockKey("locks/lost")
	if err != nil {
		t.Fatal(err)
	}
	lostC, err := lockC.Lock(nil)
	if err != nil || lostC == nil {
		t.Fatalf("Lock of locks/lost: %v", err)
	}
	heldC, _, err := b.Get("locks/lost", nil)
	if err != nil || heldC == nil || heldC.Session == "" {
		t.Fatalf("the held key: %+v %v", heldC, err)
	}
	if _, err := c[2].Session().Destroy(heldC.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lostC:
	case <-time.After(3 * time.Second):
		t.Fatal("a holder whose session was destroyed was not told it lost its lock")
	}
	if err := lockC.Unlock(); err != nil {
		t.Fatalf("Unlock of a lost lock: %v", err)
	}

	// A session's end wakes a blocking Get of a key it holds, at another
	// node, and the key is released (Behavior release, a 1ms lock delay).
	sid, _, err := c[0].Session().Create(&consul.SessionEntry{TTL: "10s", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.Acquire(&consul.KVPair{Key: "locks/eph", Value: []byte("x"), Session: sid}, nil); err != nil || !ok {
		t.Fatalf("Acquire: %v %v", ok, err)
	}
	heldEph, ephMeta, err := b.Get("locks/eph", nil)
	if err != nil || heldEph.Session != sid {
		t.Fatalf("the acquired key: %+v %v", heldEph, err)
	}
	woken := make(chan *consul.KVPair, 1)
	start = time.Now()
	go func() {
		p, _, err := b.Get("locks/eph", &consul.QueryOptions{WaitIndex: ephMeta.LastIndex, WaitTime: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woken <- p
	}()
	if _, err := c[2].Session().Destroy(sid, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-woken:
		if p == nil || p.Session != "" || string(p.Value) != "x" || time.Since(start) > 10*time.Second {
			t.Fatalf("blocking Get after the holder's destroy: %+v after %v", p, time.Since(start))
		}
	case <-time.After(25 * time.Second):
		t.Fatal("blocking Get of a held key never returned after its session's destroy")
	}

	// api.Semaphore: two slots, three contenders at three nodes; the third
	// gets a slot once a holder releases its own.
	sem := func(i int) *consul.Semaphore {
		s, err := c[i].SemaphorePrefix("sem/", 2)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s0, s1, s2 := sem(0), sem(1), sem(2)
	for i, s := range []*consul.Semaphore{s0, s1} {
		if lost, err := s.Acquire(nil); err != nil || lost == nil {
			t.Fatalf("semaphore slot %d: %v", i, err)
		}
	}
	third := make(chan error, 1)
	go func() {
		lost, err := s2.Acquire(nil)
		if err == nil && lost == nil {
			err = fmt.Errorf("no channel")
		}
		third <- err
	}()
	// The third has begun once its contender key is under the prefix.
	for deadline := time.Now().Add(10 * time.Second); ; {
		keys, _, err := a.Keys("sem/", "", nil)
		if err == nil && len(keys) == 4 { // three contenders and .lock
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the third contender never wrote its key: %q %v", keys, err)
		}
		time.Sleep(10 * time.Millisecond) // polling another goroutine's progress
	}
	select {
	case err := <-third:
		t.Fatalf("a third holder of a 2-slot semaphore: %v", err)
	default:
	}
	if err := s0.Release(); err != nil {
		t.Fatalf("semaphore release: %v", err)
	}
	select {
	case err := <-third:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the third contender never got the released slot")
	}
	for _, s := range []*consul.Semaphore{s1, s2} {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}

	leader, err := c[0].Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("Status().Leader(): %q %v", leader, err)
	}
	peers, err := c[0].Status().Peers()
	if err != nil || len(peers) != 3 {
		t.Fatalf("Status().Peers(): %q %v", peers, err)
	}
}

// secureConsulChecks drives the Consul API of a secure cluster (TLS with
// client certificates, auth on: app may read and write app/ only) with
// Consul's client: its token (X-Consul-Token) is a caspaxos token from
// the client port's login.
func secureConsulChecks(t *testing.T, s *secure) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: s.tlsConfig(t)}, Timeout: 10 * time.Second}
	resp, err := hc.Post("https://"+s.clients[0]+"/v1/auth/login", "application/json",
		strings.NewReader(`{"user":"app","password":"`+appPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if err != nil || login.Token == "" {
		t.Fatalf("login: %v %+v", err, login)
	}
	client := func(token string) *consul.KV {
		cli, err := consul.NewClient(&consul.Config{Address: s.consul[1], Scheme: "https", Token: token,
			TLSConfig: consul.TLSConfig{CAFile: s.file("ca.pem"), CertFile: s.file("client.pem"), KeyFile: s.file("client-key.pem")}})
		if err != nil {
			t.Fatal(err)
		}
		return cli.KV()
	}
	app := client(login.Token)
	if _, err := app.Put(&consul.KVPair{Key: "app/c", Value: []byte("v")}, nil); err != nil {
		t.Fatalf("app's Put over TLS with its token: %v", err)
	}
	if p, _, err := app.Get("app/c", nil); err != nil || p == nil || string(p.Value) != "v" {
		t.Fatalf("app's Get: %+v %v", p, err)
	}
	if _, _, err := app.Get("secret", nil); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("app reads secret: %v, want Permission denied", err)
	}
	keys, _, err := app.Keys("", "", nil)
	if err != nil || fmt.Sprint(keys) != "[app/c app/k]" {
		t.Fatalf("app's Keys: %q %v, want app/ only", keys, err)
	}
	if _, _, err := client("").Get("app/c", nil); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("a Get without a token: %v, want ACL not found", err)
	}
}
