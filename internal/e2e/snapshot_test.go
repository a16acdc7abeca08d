package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/snapshot"
)

// TestSnapshotSaveRestore saves a cluster with `caspaxos snapshot save`
// while clients write to it, restores the file into a fresh cluster, and
// checks that every key live through the save is there with its value, at
// a version above the file's bound (so an old compare-and-swap fails);
// that a second restore needs --into; and that a truncated or altered
// file is refused before anything is written. It runs under each setup.
func TestSnapshotSaveRestore(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testSnapshotSaveRestore(t, s) })
	}
}

// snapKeys: stable keys (untouched through the save), hot keys (written
// through it), churn keys (deleted and created through it).
const (
	snapStable = 200
	snapHot    = 8
	snapChurn  = 8
)

func testSnapshotSaveRestore(t *testing.T, s setup) {
	ctx := context.Background()
	a := newClusterWith(t, 3, s, "snap/")
	for i := range a.procs {
		a.waitHealth(i, 200)
	}
	cl := a.client(0, 1, 2)
	stable := map[string]client.Value{}
	for k := range snapStable {
		key, val := fmt.Sprintf("snap/stable/%03d", k), []byte(fmt.Sprintf("value %d", k))
		if k == 7 {
			val = bytes.Repeat([]byte("L"), 100<<10) // over a listing's value limit: read alone
		}
		var v uint64
		var err error
		for range k%3 + 1 { // versions of 1 to 3 writes
			if v, err = cl.Put(ctx, key, val); err != nil {
				t.Fatal(err)
			}
		}
		stable[key] = client.Value{Data: val, Version: v}
	}
	for k := range snapHot {
		if _, err := cl.Put(ctx, fmt.Sprintf("snap/hot/%d", k), []byte("hot 0")); err != nil {
			t.Fatal(err)
		}
	}

	// Writers through the save: hot keys rewritten, churn keys deleted and
	// created. Every value a hot key held is recorded.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	hotValues := map[string]map[string]bool{}
	for k := range snapHot {
		hotValues[fmt.Sprintf("snap/hot/%d", k)] = map[string]bool{"hot 0": true}
	}
	for w := range snapHot {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("snap/hot/%d", w)
			churn := fmt.Sprintf("snap/churn/%d", w)
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				val := fmt.Sprintf("hot %d", n)
				mu.Lock()
				hotValues[key][val] = true // recorded before it may be applied
				mu.Unlock()
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = cl.Put(wctx, key, []byte(val))
				if n%2 == 0 {
					_, _ = cl.Delete(wctx, churn, 0)
				} else {
					_, _ = cl.Put(wctx, churn, []byte(val))
				}
				cancel()
			}
		}()
	}
	file := filepath.Join(t.TempDir(), "a.snap")
	out, errOut, code := a.run(0, true, "snapshot", "save", "--page-size", "50", file)
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("snapshot save: exit %d: %s%s", code, out, errOut)
	}
	if errOut != "" {
		t.Fatalf("snapshot save drew on stderr, which is no terminal: %q", errOut)
	}
	t.Logf("save: %s", strings.TrimSpace(out))

	// The file holds every key live through the save.
	h, recs := readSnapshot(t, file)
	if len(h.Info.Members) != 3 || h.Keys != uint64(len(recs)) {
		t.Fatalf("header %+v with %d records", h, len(recs))
	}
	got := map[string]snapshot.Record{}
	var highest uint64
	for _, r := range recs {
		got[r.Key] = r
		highest = max(highest, r.Version)
	}
	if h.VersionBound != highest {
		t.Fatalf("version bound %d, highest version in the file %d", h.VersionBound, highest)
	}
	for key, v := range stable {
		r, ok := got[key]
		if !ok || !bytes.Equal(r.Value, v.Data) || r.Version != v.Version {
			t.Fatalf("stable key %s in the file: %v %.20q@%d, want %.20q@%d", key, ok, r.Value, r.Version, v.Data, v.Version)
		}
	}
	for key, vals := range hotValues {
		r, ok := got[key]
		if !ok || !vals[string(r.Value)] {
			t.Fatalf("hot key %s in the file: %v %q, never written", key, ok, r.Value)
		}
	}
	var status struct {
		Keys         uint64 `json:"keys"`
		VersionBound uint64 `json:"version_bound"`
		Verified     bool   `json:"verified"`
		Members      []struct {
			Name string `json:"name"`
		} `json:"members"`
	}
	sout, serr, code := a.run(0, false, "-o", "json", "snapshot", "status", file)
	if code != 0 || json.Unmarshal([]byte(sout), &status) != nil || status.Keys != h.Keys || status.VersionBound != h.VersionBound || !status.Verified || len(status.Members) != 3 {
		t.Fatalf("snapshot status: exit %d: %s%s", code, sout, serr)
	}

	// Restore into a fresh cluster.
	b := newClusterWith(t, 3, s, "snap/")
	for i := range b.procs {
		b.waitHealth(i, 200)
	}
	if out, errOut, code := b.run(1, true, "snapshot", "restore", file); code != 0 {
		t.Fatalf("snapshot restore: exit %d: %s%s", code, out, errOut)
	}
	bc := b.client(0, 1, 2)
	for _, r := range recs {
		v, err := bc.Get(ctx, r.Key)
		if err != nil || !bytes.Equal(v.Data, r.Value) || v.Version <= h.VersionBound {
			t.Fatalf("restored %s: %.20q@%d %v, want %.20q above %d", r.Key, v.Data, v.Version, err, r.Value, h.VersionBound)
		}
	}
	// A compare-and-swap prepared against the saved cluster fails.
	old := stable["snap/stable/001"]
	if _, err := bc.CompareAndSwap(ctx, "snap/stable/001", old.Version, []byte("stale")); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("old compare-and-swap against restored data: %v, want version mismatch", err)
	}
	before, err := bc.Get(ctx, "snap/stable/002")
	if err != nil {
		t.Fatal(err)
	}

	// Again without --into: refused, the cluster holds keys.
	if out, errOut, code := b.run(0, true, "snapshot", "restore", file); code == 0 || !strings.Contains(errOut, "--into") {
		t.Fatalf("second restore without --into: exit %d: %s%s", code, out, errOut)
	}
	// A truncated and an altered file: refused, nothing written.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(raw)
	altered[len(raw)/2] ^= 0x20
	for _, bad := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", raw[:len(raw)*2/3], "truncated"},
		{"altered", altered, "corrupt"},
	} {
		p := filepath.Join(t.TempDir(), bad.name+".snap")
		if err := os.WriteFile(p, bad.b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"snapshot", "restore", "--into", p}, {"snapshot", "status", p}} {
			if out, errOut, code := b.run(0, true, args...); code != 1 || !strings.Contains(errOut, bad.want) {
				t.Fatalf("%s file, %v: exit %d: %s%s, want exit 1 saying %q", bad.name, args, code, out, errOut, bad.want)
			}
		}
	}
	if after, err := bc.Get(ctx, "snap/stable/002"); err != nil || after.Version != before.Version {
		t.Fatalf("a refused restore changed %s: version %d -> %d (%v)", "snap/stable/002", before.Version, after.Version, err)
	}
	// With --into: every key rises again.
	if out, errOut, code := b.run(2, true, "snapshot", "restore", "--into", file); code != 0 {
		t.Fatalf("restore --into: exit %d: %s%s", code, out, errOut)
	}
	if after, err := bc.Get(ctx, "snap/stable/002"); err != nil || after.Version <= before.Version || !bytes.Equal(after.Data, before.Data) {
		t.Fatalf("after restore --into, %s: %q@%d %v; before %q@%d", "snap/stable/002", after.Data, after.Version, err, before.Data, before.Version)
	}
	// Restore needs admin: the app user may write every snap/ key, yet is refused.
	if s.secure {
		args := append(append([]string{"--endpoints", b.procs[0].client}, b.cliFlags(false)...), "--user", appUser+":"+appPassword, "snapshot", "restore", "--into", file)
		if out, err := exec.Command(binaryPath, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("restore as %s: %v: %s, want permission denied", appUser, err, out)
		}
	}
}

// run runs a caspaxos command through node via (as root if admin, on a
// secure cluster) and returns its stdout, stderr and exit code.
func (c *cluster) run(via int, admin bool, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append(append([]string{"--endpoints", c.procs[via].client}, c.cliFlags(admin)...), args...)
	cmd := exec.CommandContext(ctx, binaryPath, full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	}
	c.t.Fatalf("caspaxos %v: %v", args, err)
	return "", "", -1
}

func readSnapshot(t *testing.T, path string) (snapshot.Header, []snapshot.Record) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := snapshot.NewReader(f, snapshot.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []snapshot.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header(), recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}
