// Package arch checks the shape of the module (STYLE.md): which package may
// import which, and that the protocol core stays pure.
package arch

import (
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

// allowed lists, per package folder, the module's packages it may import;
// a folder not listed may import any of them.
var allowed = map[string][]string{
	"protocol": {},
	"kv":       {"protocol"},
	"storage":  {"protocol"},
	// The pure core only, for its rendezvous order (client/route.go).
	"client":    {"api", "protocol"},
	"transport": {"protocol", "kv", "internal/connsplit"},
	// A leaf: the transport and the daemon share it.
	"internal/connsplit": {},
}

// imports returns the imports of the non-test Go files of every package
// folder below root, keyed by folder relative to root.
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
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[filepath.ToSlash(rel)] = append(out[filepath.ToSlash(rel)], p)
		}
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
		for _, p := range imps {
			checkImport(t, dir, p)
		}
	}
}

func checkImport(t *testing.T, dir, p string) {
	t.Helper()
	top := strings.SplitN(dir, "/", 2)[0]
	if top == "protocol" {
		if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
			t.Errorf("%s imports %s: the protocol core may import the standard library only", dir, p)
		}
		if slices.Contains(forbiddenInCore, p) {
			t.Errorf("%s imports %s: the protocol core has no clock, randomness, I/O or goroutines", dir, p)
		}
	}
	if !strings.HasPrefix(p, module+"/") {
		return
	}
	target := strings.TrimPrefix(p, module+"/")
	if strings.HasPrefix(target, "internal/sim") && top != "internal" {
		t.Errorf("%s imports %s: the simulator is for tests only", dir, p)
	}
	if ok, listed := allowed[top]; listed && !slices.ContainsFunc(ok, func(a string) bool {
		return target == a || strings.HasPrefix(target, a+"/")
	}) && target != top && !strings.HasPrefix(target, top+"/") {
		t.Errorf("%s imports %s: %s may import only %v of this module", dir, p, top, ok)
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
