package storage_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// killChildEnv, when set to a directory, makes TestKill run as the child
// writer on that directory instead of as the test.
const killChildEnv = "CASPAXOS_STORAGE_KILL_CHILD"

const (
	killWriters  = 4
	killCycles   = 25
	killDeadline = 30 * time.Second // for any one step of the parent
)

// killRegister is what the child writes under key with promise p: the two
// keys of a writer are always written together, with the same promise.
func killRegister(key string, p uint64) protocol.Register {
	return protocol.Register{
		Promise:  protocol.Ballot{Counter: p, Proposer: 1},
		Accepted: protocol.Ballot{Counter: p, Proposer: 1},
		State:    protocol.State{Value: []byte(fmt.Sprintf("%s@%d", key, p)), Version: p},
	}
}

func killKeys(w int) (string, string) { return fmt.Sprintf("w%d/a", w), fmt.Sprintf("w%d/b", w) }

// TestKill re-executes the test binary as a writer that applies registers
// with rising promises and prints each acknowledged write, SIGKILLs it at
// random moments, and checks after each kill that nothing acknowledged was
// lost, no Apply was torn, and no promise went back.
func TestKill(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		runKillChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts 25 processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	dir := t.TempDir()
	acked := map[string]uint64{} // highest acknowledged promise per key
	var ackedCeiling uint64
	stored := map[string]uint64{} // promise found after the previous kill
	for cycle := range killCycles {
		n := 1 + rng.IntN(120)
		ceil := runKillCycle(t, dir, n, acked)
		ackedCeiling = max(ackedCeiling, ceil)
		checkAfterKill(t, dir, acked, ackedCeiling, stored)
		if t.Failed() {
			t.Fatalf("cycle %d failed", cycle)
		}
	}
	t.Logf("after %d kills: promises %v, ceiling at least %d", killCycles, stored, ackedCeiling)
}

// runKillCycle starts the child, lets it acknowledge n writes, kills it,
// and records every write it acknowledged (all of its output is read).
// It returns the highest ceiling the child acknowledged.
func runKillCycle(t *testing.T, dir string, n int, acked map[string]uint64) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // the child stops when it is closed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var ceiling uint64
	record := func(line string) {
		if ceil, ok := strings.CutPrefix(line, "ceiling "); ok {
			c, _ := strconv.ParseUint(ceil, 10, 64)
			ceiling = max(ceiling, c)
		}
		var key string
		var p uint64
		if _, err := fmt.Sscanf(line, "ack %s %d", &key, &p); err == nil {
			acked[key] = max(acked[key], p)
		}
	}
	waitLine(t, lines, func(l string) bool { return l == "ready" }, record)
	if _, err := storage.OpenPebble(dir, storage.PebbleOptions{}); !errors.Is(err, storage.ErrLocked) {
		t.Errorf("OpenPebble while the child runs = %v, want ErrLocked", err)
	}
	acks := 0
	waitLine(t, lines, func(l string) bool {
		if strings.HasPrefix(l, "ack ") {
			acks++
		}
		return acks >= n
	}, record)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for line := range lines { // what the child printed before it died
		record(line)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the child exited cleanly; it should have been killed")
	}
	return ceiling
}

// waitLine feeds lines to record until done says so, failing the test if
// that takes longer than killDeadline or the child's output ends first.
func waitLine(t *testing.T, lines <-chan string, done func(string) bool, record func(string)) {
	t.Helper()
	timer := time.NewTimer(killDeadline)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the child's output ended early")
			}
			record(line)
			if done(line) {
				return
			}
		case <-timer.C:
			t.Fatalf("no progress from the child in %v", killDeadline)
		}
	}
}

// checkAfterKill opens the store the killed child left and checks it.
func checkAfterKill(t *testing.T, dir string, acked map[string]uint64, ceiling uint64, stored map[string]uint64) {
	t.Helper()
	s, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatalf("OpenPebble after the kill: %v", err)
	}
	defer s.Close()
	if c, err := s.Ceiling(); err != nil || c < ceiling {
		t.Errorf("ceiling %d (%v), but %d was acknowledged", c, err, ceiling)
	}
	for w := range killWriters {
		ka, kb := killKeys(w)
		ra, rb := mustGetReg(t, s, ka), mustGetReg(t, s, kb)
		pa, pb := ra.Promise.Counter, rb.Promise.Counter
		if pa != pb {
			t.Errorf("%s has promise %d but %s has %d: a torn Apply", ka, pa, kb, pb)
		}
		for _, kr := range []struct {
			key string
			reg protocol.Register
		}{{ka, ra}, {kb, rb}} {
			p := kr.reg.Promise.Counter
			if p > 0 && !kr.reg.Equal(killRegister(kr.key, p)) {
				t.Errorf("%s holds %+v, which the child never wrote", kr.key, kr.reg)
			}
			if p < acked[kr.key] {
				t.Errorf("%s: promise %d was acknowledged, found %d", kr.key, acked[kr.key], p)
			}
			if p < stored[kr.key] {
				t.Errorf("%s: promise went back from %d to %d", kr.key, stored[kr.key], p)
			}
			stored[kr.key] = p
		}
	}
}

func mustGetReg(t *testing.T, s storage.Store, key string) protocol.Register {
	t.Helper()
	r, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return r
}

// runKillChild is the child: it writes until it is killed, or until its
// stdin is closed (the parent died), and prints "ready", then one line per
// acknowledged write: "ack <key> <promise>" or "ceiling <c>".
func runKillChild(t *testing.T, dir string) {
	s, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatalf("child: OpenPebble: %v", err)
	}
	defer s.Close()
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	fmt.Println("ready")
	var wg sync.WaitGroup
	for w := range killWriters {
		ka, kb := killKeys(w)
		p := mustGetReg(t, s, ka).Promise.Counter
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p++
				err := s.Apply([]storage.Entry{{Key: ka, Register: killRegister(ka, p)}, {Key: kb, Register: killRegister(kb, p)}})
				if err != nil {
					t.Errorf("child: Apply: %v", err)
					return
				}
				fmt.Printf("ack %s %d\nack %s %d\n", ka, p, kb, p)
			}
		})
	}
	wg.Go(func() { childCeilings(t, s, stop) })
	wg.Wait()
}

// childCeilings raises the ceiling from its stored value until stop.
func childCeilings(t *testing.T, s storage.Store, stop <-chan struct{}) {
	c, err := s.Ceiling()
	if err != nil {
		t.Errorf("child: Ceiling: %v", err)
		return
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		c++
		if err := s.SetCeiling(c); err != nil {
			t.Errorf("child: SetCeiling: %v", err)
			return
		}
		fmt.Printf("ceiling %d\n", c)
	}
}
