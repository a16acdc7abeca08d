// Package arch checks the shape of the module (STYLE.md): which package may
// import which, and that the protocol core stays pure.
package arch

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/caspaxos/caspaxos"

// forbiddenInCore are the standard packages that would give the protocol
// core a clock, randomness, I/O, goroutine coordination or logging.
var forbiddenInCore = []string{
	"context", "io/fs", "log", "log/slog", "math/rand", "math/rand/v2", "net", "net/http",
	"os", "os/exec", "sync", "sync/atomic", "syscall", "time", "unsafe",
}

// allowed lists, per package folder, the module's packages it may import
// besides its own subfolders. An entry holds for its folder and every
// subfolder without an entry of its own, except the leaf "server", which
// holds for itself only. A folder under no entry may import anything,
// except below server/: there every package folder must fall under an
// entry of allowed or of assembly (test-support packages aside), so that a
// new concern cannot escape the rules (TestImportRules).
var allowed = map[string][]string{
	"protocol": {},
	"kv":       {"protocol"},
	"storage":  {"protocol"},
	// The pure core for its rendezvous order (client/route.go), kv for the
	// routing bound it shares with the nodes.
	"client":    {"api", "kv", "protocol", "internal/certs"},
	"transport": {"protocol", "kv", "internal/connsplit", "internal/certs"},
	// A leaf: the transport and the daemon share it.
	"internal/connsplit": {},
	// TLS material: the transport, the peer services, the daemon, the Go
	// client and the command all load certificates through it.
	"internal/certs": {},
	// The snapshot file format: a pure encoder and decoder, the standard
	// library only; the command does the I/O around it.
	"internal/snapshot": {},
	// The server's shared seams (STYLE.md): a leaf below every concern.
	"server": {"protocol", "kv"},
	// One package per concern. Each reaches the others only through the
	// leaf's seams and the small interfaces it declares, except where the
	// graph says so: a node holds an acceptor and a proposer; membership
	// drives a node and guards its GC.
	"server/acceptor":   {"protocol", "kv", "storage", "server"},
	"server/proposer":   {"protocol", "kv", "storage", "server"},
	"server/gc":         {"protocol", "kv", "storage", "server"},
	"server/node":       {"protocol", "kv", "storage", "server", "server/acceptor", "server/proposer"},
	"server/membership": {"protocol", "kv", "storage", "server", "server/node", "server/gc", "server/proposer"},
	// Authorization: its pure parts and the Guard, which reaches the
	// registers through the small Registers interface it declares.
	"server/auth":      {"kv", "protocol"},
	"server/clientapi": {"api", "kv", "protocol", "server/auth", "server/lock"},
	// Listing: the merge rule of the core, its reads through a function
	// and the acceptors through the small interface it declares.
	"server/list": {"protocol", "kv"},
	// Watching: the watch rule of the core and the key space's (which
	// keys a prefix shows, kv.PrefixShows); reads, listings, the
	// configuration and the hint streams through the Deps and the Source
	// it declares. The acceptor reaches it through acceptor.Hinter.
	"server/watch": {"protocol", "kv"},
	// The etcd front end: etcd's API over the client port's Backend,
	// admission and auth, and etcd's lock and election services over the
	// acquire loop (server/lock); its generated code lives below it (etcdpb).
	"server/etcdapi": {"kv", "protocol", "server/auth", "server/clientapi", "server/lock"},
	// The Consul front end: Consul's KV HTTP API over the same seams.
	"server/consulapi": {"kv", "protocol", "server/auth", "server/clientapi"},
	// Reads every part's stats at scrape time.
	"server/metrics": {"kv", "protocol", "storage", "transport", "server/node", "server/gc"},
	// The peer port's services: their wire, and the errors of the
	// packages whose calls they carry; the Admin clients' certificate
	// checks.
	"server/peerapi": {"protocol", "kv", "server", "server/acceptor", "server/gc", "server/membership", "server/list", "server/watch", "transport/peerpb", "internal/certs"},
	// A node's status for `caspaxos status` and the status page: the
	// daemon hands it the node's parts as functions; storage for the WAL
	// fsync histogram's buckets.
	"server/status": {"storage"},
	// The status page: embedded files and their handler, nothing more.
	"server/ui": {},
	// The amnesia guard: the data directory's identity in storage, the
	// members' word on it through the membership's answer type.
	"server/identity": {"protocol", "storage", "server/membership"},
	// Leases: their expiry, proposed through the small Doer and Scanner
	// interfaces it declares.
	"server/lease": {"protocol", "kv"},
	// Locks: the acquire's wait, over the node's operations and watches
	// through the function types of its Deps.
	"server/lock": {"protocol", "kv"},
}

// assembly lists the folders below server/ that may import any package of
// the module (the simulators and test-support packages aside): the daemon
// assembles one node of a network cluster from every concern.
var assembly = map[string]bool{
	"server/daemon": true,
}

// rule returns the folder whose entry in allowed or assembly holds for
// dir, false if none does.
func rule(dir string) (string, bool) {
	for d := dir; ; {
		_, ok := allowed[d]
		if (ok || assembly[d]) && (d != "server" || dir == "server") {
			return d, true
		}
		i := strings.LastIndex(d, "/")
		if i < 0 {
			return "", false
		}
		d = d[:i]
	}
}

// unruled reports whether dir, a package folder, lies below server/ with
// no rule: no entry of allowed or assembly holds for it, and it is no
// test-support package.
func unruled(dir string) bool {
	if !strings.HasPrefix(dir, "server/") || testSupport(dir) {
		return false
	}
	_, listed := rule(dir)
	return !listed
}

// testSupport reports whether a package exists for tests only (its name
// ends in "test": servertest, nodetest, storagetest, ...).
func testSupport(path string) bool {
	return strings.HasSuffix(path[strings.LastIndex(path, "/")+1:], "test")
}

// imports returns the imports of the non-test Go files of every package
// folder below root, keyed by folder relative to root; a folder whose files
// import nothing has an entry too.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bench" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		dir := filepath.ToSlash(rel)
		imps := out[dir]
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imps = append(imps, p)
		}
		out[dir] = imps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportRules(t *testing.T) {
	all := imports(t, filepath.Join("..", ".."))
	if len(all["protocol"]) == 0 {
		t.Fatal("found no imports in protocol/: is the walk looking at the right folder?")
	}
	for dir, imps := range all {
		if unruled(dir) {
			t.Errorf("%s has no import rule: give it an entry in allowed (or, if it assembles the others, in assembly)", dir)
		}
		for _, p := range imps {
			if v := violation(dir, p); v != "" {
				t.Error(v)
			}
		}
	}
}

// violation returns why dir may not import p, or "" if it may.
func violation(dir, p string) string {
	top := strings.SplitN(dir, "/", 2)[0]
	if top == "protocol" {
		if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
			return fmt.Sprintf("%s imports %s: the protocol core may import the standard library only", dir, p)
		}
		if slices.Contains(forbiddenInCore, p) {
			return fmt.Sprintf("%s imports %s: the protocol core has no clock, randomness, I/O or goroutines", dir, p)
		}
	}
	if !strings.HasPrefix(p, module+"/") {
		return ""
	}
	target := strings.TrimPrefix(p, module+"/")
	if (strings.HasPrefix(target, "internal/sim") || strings.HasPrefix(target, "internal/chaos")) && top != "internal" {
		return fmt.Sprintf("%s imports %s: the simulators are for tests only", dir, p)
	}
	if testSupport(target) && !testSupport(dir) {
		return fmt.Sprintf("%s imports %s: a test-support package is for tests only", dir, p)
	}
	key, listed := rule(dir)
	if testSupport(dir) || !listed || assembly[key] || target == key || strings.HasPrefix(target, key+"/") && key != "server" {
		return ""
	}
	if !slices.ContainsFunc(allowed[key], func(a string) bool {
		return target == a || strings.HasPrefix(target, a+"/") && a != "server"
	}) {
		return fmt.Sprintf("%s imports %s: %s may import only %v of this module", dir, p, key, allowed[key])
	}
	return ""
}

// The rules themselves, on imports that must pass and imports that must not.
func TestImportRuleCases(t *testing.T) {
	tests := []struct {
		dir, imp string
		ok       bool
	}{
		{"protocol", "time", false},
		{"protocol", "sort", true},
		{"protocol", module + "/kv", false},
		{"server", module + "/kv", true},
		{"server", module + "/storage", false},
		{"server", module + "/server/node", false},
		{"server/acceptor", module + "/server", true},
		{"server/acceptor", module + "/server/proposer", false},
		{"server/gc", module + "/server/node", false},
		{"server/node", module + "/server/acceptor", true},
		{"server/node", module + "/server/membership", false},
		{"server/membership", module + "/server/node", true},
		{"server/membership", module + "/server/daemon", false},
		{"server/daemon", module + "/server/membership", true},
		{"server/daemon", module + "/server/identity", true},
		{"server/identity", module + "/server/membership", true},
		{"server/identity", module + "/storage", true},
		{"server/identity", module + "/server/peerapi", false},
		{"server/identity", module + "/server/node", false},
		{"server/membership", module + "/server/identity", false},
		{"server/membership", module + "/server/peerapi", false},
		{"server/daemon", module + "/server/servertest", false},
		{"server/node/nodetest", module + "/server/servertest", true},
		{"cmd/caspaxos", module + "/internal/sim", false},
		{"cmd/caspaxos", module + "/internal/chaos", false},
		{"server/node", module + "/internal/chaos", false},
		{"internal/chaos", module + "/internal/sim", true},
		{"internal/chaos", module + "/server/membership", true},
		{"client", module + "/server", false},
		{"server/peerapi", module + "/transport/peerpb", true},
		{"server/peerapi", module + "/server/node", false},
		{"server/watch", module + "/server/list", false},
		{"server/peerapi", module + "/server/watch", true},
		{"server/peerapi", module + "/server/daemon", false},
		{"server/auth", module + "/kv", true},
		{"server/auth", module + "/server/node", false},
		{"server/auth", module + "/server/clientapi", false},
		{"server/clientapi", module + "/server/auth", true},
		{"server/clientapi", module + "/server/node", false},
		{"server/etcdapi", module + "/server/clientapi", true},
		{"server/etcdapi", module + "/server/etcdapi/etcdpb", true},
		{"server/etcdapi", module + "/server/node", false},
		{"server/etcdapi", module + "/server/list", false},
		{"server/consulapi", module + "/server/clientapi", true},
		{"server/consulapi", module + "/server/watch", false},
		{"server/daemon", module + "/server/auth", true},
	}
	for _, tt := range tests {
		if got := violation(tt.dir, tt.imp); (got == "") != tt.ok {
			t.Errorf("%s importing %s: violation %q, want allowed %v", tt.dir, tt.imp, got, tt.ok)
		}
	}
}

// Which package folders need a rule of their own.
func TestUnruledCases(t *testing.T) {
	tests := []struct {
		dir     string
		unruled bool
	}{
		{"server/newconcern", true},
		{"server/newconcern/sub", true},
		{"server", false},
		{"server/node", false},
		{"server/daemon", false},
		{"server/etcdapi/etcdpb/v3lockpb", false}, // under server/etcdapi's entry
		{"server/servertest", false},
		{"server/node/nodetest", false},
		{"server/clientapi/clientapitest", false},
		{"internal/newtool", false},
		{"cmd/caspaxos", false},
	}
	for _, tt := range tests {
		if got := unruled(tt.dir); got != tt.unruled {
			t.Errorf("unruled(%q) = %v, want %v", tt.dir, got, tt.unruled)
		}
	}
}

// TestNoMemoryStoreInBinary keeps the in-memory store out of the product's
// command: it exists for unit tests and the simulator only.
func TestNoMemoryStoreInBinary(t *testing.T) {
	root := filepath.Join("..", "..", "cmd")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "NewMemory") {
			t.Errorf("%s uses the in-memory store", path)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
