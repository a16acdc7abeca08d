package identity

import (
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func newDir(t *testing.T) *storage.Dir { return storage.NewDir(nil, t.TempDir()) }

func write(t *testing.T, dir *storage.Dir, f storage.StateFile, body string) {
	t.Helper()
	if err := dir.WriteState(f, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// loadIdentity makes an identity at a directory's first start, tells a
// directory of a release before IDENTITY from a new one, and refuses
// another node's directory.
func TestLoadIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir *storage.Dir)
		join    bool
		age     dirAge
		joined  bool
		inc     string // "" when the directory makes a new one
		wantErr string
	}{
		{"a new bootstrap directory", nil, false, dirNew, false, "", ""},
		{"a new directory started with --join", nil, true, dirNew, true, "", ""},
		{"a member's directory of a release before IDENTITY", func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.WasMemberFile, "1\n")
		}, false, dirUpgraded, false, "", ""},
		{"a joined node's directory of a release before IDENTITY keeps its incarnation", func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.IncarnationFile, "0123abcd")
		}, false, dirUpgraded, true, "0123abcd", ""},
		{"another node's directory", func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.IdentityFile, `{"name":"n2","incarnation":"aa"}`)
		}, false, dirKnown, false, "", `belongs to node "n2"`},
		{"a directory without an incarnation", func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.IdentityFile, `{"name":"n1"}`)
		}, false, dirKnown, false, "", `belongs to node "n1" (incarnation "")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			ident, age, err := loadIdentity(dir, "n1", tc.join)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadIdentity = %+v, %v; want an error containing %q", ident, err, tc.wantErr)
				}
				return
			}
			if err != nil || age != tc.age || ident.Name != "n1" || ident.Joined != tc.joined {
				t.Fatalf("loadIdentity = %+v, age %v, %v; want joined %v, age %v", ident, age, err, tc.joined, tc.age)
			}
			if tc.inc != "" && ident.Incarnation != tc.inc {
				t.Fatalf("incarnation %q, want %q", ident.Incarnation, tc.inc)
			}
			if b, err := hex.DecodeString(ident.Incarnation); tc.inc == "" && (err != nil || len(b) != 8) {
				t.Fatalf("a new incarnation %q is not 8 random bytes in hex", ident.Incarnation)
			}
			// The next start finds the same identity, and says so.
			again, age, err := loadIdentity(dir, "n1", !tc.join)
			if err != nil || again != ident || age != dirKnown {
				t.Fatalf("restart: %+v, age %v, %v; want %+v, known", again, age, err, ident)
			}
		})
	}
}

// A bootstrap node's ID is of its name, so that every node derives it from
// --cluster; a joined node's is of its name and incarnation: a new disk is
// a new node.
func TestIdentityID(t *testing.T) {
	for _, tc := range []struct {
		ident dataIdentity
		want  protocol.NodeID
	}{
		{dataIdentity{Name: "n1", Incarnation: "aa"}, NodeID("n1")},
		{dataIdentity{Name: "n1", Incarnation: "bb"}, NodeID("n1")},
		{dataIdentity{Name: "n1", Incarnation: "aa", Joined: true}, NodeID("n1#aa")},
		{dataIdentity{Name: "n1", Incarnation: "bb", Joined: true}, NodeID("n1#bb")},
	} {
		if got := tc.ident.id(); got != tc.want || got == 0 || got>>63 != 0 {
			t.Errorf("%+v: ID %d, want %d (not zero, top bit clear)", tc.ident, got, tc.want)
		}
	}
	if NodeID("n1#aa") == NodeID("n1") {
		t.Fatal("a joined node has the ID of its name")
	}
}

// learn records a member's first incarnation durably and never replaces
// it: a member that comes back with another directory is known by the
// one it had.
func TestPeerBookLearn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before map[protocol.NodeID]string // learnt first
		learn  string                     // the incarnation given to learn of node 2
		want   string                     // what learn returns, and the book holds after
	}{
		{"a first incarnation is recorded", nil, "aa", "aa"},
		{"nothing to record", nil, "", ""},
		{"a known member keeps its incarnation", map[protocol.NodeID]string{2: "aa"}, "bb", "aa"},
		{"the same incarnation again", map[protocol.NodeID]string{2: "aa"}, "aa", "aa"},
		{"asked about without one", map[protocol.NodeID]string{2: "aa"}, "", "aa"},
		{"another member's is no answer for this one", map[protocol.NodeID]string{3: "cc"}, "bb", "bb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			book, err := loadPeerBook(dir)
			if err != nil {
				t.Fatal(err)
			}
			for id, inc := range tc.before {
				if _, err := book.learn(id, inc); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := book.learn(2, tc.learn); err != nil || got != tc.want {
				t.Fatalf("learn(2, %q) = %q, %v; want %q", tc.learn, got, err, tc.want)
			}
			reloaded, err := loadPeerBook(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := reloaded.rec.Incarnations[idKey(2)]; got != tc.want {
				t.Fatalf("after a restart node 2 is known by %q, want %q", got, tc.want)
			}
			for id, inc := range tc.before {
				if got := reloaded.rec.Incarnations[idKey(id)]; got != inc {
					t.Fatalf("after a restart node %d is known by %q, want %q", id, got, inc)
				}
			}
		})
	}
}

// seal is durable and keeps the incarnations; a later learn keeps the
// seal. A write that fails changes nothing, in memory or on disk.
func TestPeerBookSeal(t *testing.T) {
	dir := newDir(t)
	book, err := loadPeerBook(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := book.learn(2, "aa"); err != nil {
		t.Fatal(err)
	}
	if book.sealed() {
		t.Fatal("sealed before seal")
	}
	if err := book.seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := book.learn(3, "cc"); err != nil {
		t.Fatal(err)
	}
	reloaded, err := loadPeerBook(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reloaded.sealed() || reloaded.rec.Incarnations[idKey(2)] != "aa" || reloaded.rec.Incarnations[idKey(3)] != "cc" {
		t.Fatalf("after a restart: %+v, want sealed with both incarnations", reloaded.rec)
	}

	gone := &peerBook{dir: storage.NewDir(nil, filepath.Join(t.TempDir(), "missing")), rec: peerRecords{Incarnations: map[string]string{}}}
	if _, err := gone.learn(2, "aa"); err == nil {
		t.Fatal("learn on a directory that cannot be written succeeded")
	}
	if err := gone.seal(); err == nil {
		t.Fatal("seal on a directory that cannot be written succeeded")
	}
	if gone.sealed() || len(gone.rec.Incarnations) != 0 {
		t.Fatalf("failed writes changed the book: %+v", gone.rec)
	}
}

// A damaged PEERS is an error, never an empty book (which would let an
// emptied member seal again).
func TestPeerBookDamaged(t *testing.T) {
	dir := newDir(t)
	write(t, dir, storage.PeersFile, `{"sealed":tru`)
	if _, err := loadPeerBook(dir); err == nil {
		t.Fatal("a damaged PEERS loaded")
	}
}

func TestSealWait(t *testing.T) {
	for _, tc := range []struct {
		waiting []string
		want    string
	}{
		{nil, "(waiting for )"},
		{[]string{"the first answers"}, "(waiting for the first answers)"},
		{[]string{"n2", "n3"}, "(waiting for n2, n3)"},
	} {
		var w sealWait
		w.set(tc.waiting)
		if err := w.err(); !strings.HasSuffix(err.Error(), tc.want) || !strings.Contains(err.Error(), "confirming its data directory's identity") {
			t.Errorf("waiting for %v: %q, want it to end with %q", tc.waiting, err, tc.want)
		}
	}
}

// judge is the rule of step 3: what a member's answer means to the node
// that asks.
func TestJudge(t *testing.T) {
	yes, no := true, false
	ms := threeNodes(1)
	n2 := ms.Nodes[1]
	for _, tc := range []struct {
		name    string
		age     dirAge
		r       func(r *peerInfo)
		want    bool
		refused string // a part of the refusal's message; "" if none
	}{
		{"confirms", dirNew, func(*peerInfo) {}, true, ""},
		{"confirms, predating caller_listed", dirKnown, func(r *peerInfo) { r.CallerListed = nil }, true, ""},
		{"does not list it", dirNew, func(r *peerInfo) { r.CallerListed = &no }, false, "which does not list n1"},
		{"knows another incarnation", dirKnown, func(r *peerInfo) { r.CallerIncarnation = "old" }, false, "knows n1 by incarnation old"},
		{"a new directory, a newer membership", dirNew, func(r *peerInfo) { r.Version = 2 }, false, "moved past its bootstrap membership"},
		{"an upgraded directory, a newer membership", dirUpgraded, func(r *peerInfo) { r.Version = 2 }, true, ""},
		{"knows none: it predates incarnations", dirNew, func(r *peerInfo) { r.CallerIncarnation = "" }, false, ""},
		{"says none of its own", dirNew, func(r *peerInfo) { r.Incarnation = "" }, false, ""},
		{"not listed wins over an old incarnation", dirKnown, func(r *peerInfo) { r.CallerListed, r.CallerIncarnation = &no, "old" }, false, "does not list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Guard{cfg: Config{Name: "n1", DataDir: "/data/n1", PeerAddr: "h1:7080"},
				ident: dataIdentity{Name: "n1", Incarnation: "mine"}, age: tc.age}
			r := peerInfo{Name: "n2", ID: n2.ID, Version: 1, Incarnation: "theirs", CallerListed: &yes, CallerIncarnation: "mine"}
			tc.r(&r)
			ok, err := g.judge(ms, n2, r)
			if tc.refused != "" {
				if ok || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refused) ||
					!strings.Contains(err.Error(), "caspaxos members remove n1") || !strings.Contains(err.Error(), "/data/n1") {
					t.Fatalf("judge = %v, %v; want a refusal with %q and the way back", ok, err, tc.refused)
				}
				return
			}
			if ok != tc.want || err != nil {
				t.Fatalf("judge = %v, %v; want %v", ok, err, tc.want)
			}
		})
	}
}
