package compat

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdctl runs the real etcdctl (Debian's etcd-client; `make compat`
// installs it where apt-get can) against endpoints, stdin as given.
type etcdctl struct {
	t         *testing.T
	bin       string
	endpoints string
}

func (e etcdctl) run(stdin string, args ...string) (string, error) {
	e.t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--endpoints", e.endpoints, "--command-timeout", "10s"}, args...)...)
	cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs args and wants success and every one of wants in the output.
func (e etcdctl) must(stdin string, args []string, wants ...string) {
	e.t.Helper()
	out, err := e.run(stdin, args...)
	if err != nil {
		e.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			e.t.Fatalf("etcdctl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
}

// refused runs args and wants a failure whose output says each of wants.
func (e etcdctl) refused(stdin string, args []string, wants ...string) {
	e.t.Helper()
	out, err := e.run(stdin, args...)
	if err == nil {
		e.t.Fatalf("etcdctl %s succeeded, want a refusal:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			e.t.Fatalf("etcdctl %s: refusal lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
}

func findEtcdctl(t *testing.T) string {
	bin, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Skip("etcdctl is not installed (Debian: apt-get install etcd-client; `make compat` tries that): etcdctl checks skipped")
	}
	return bin
}

func etcdctlChecks(t *testing.T, e etcdctl) {
	e.must("", []string{"put", "cfg/a", "alpha"}, "OK")
	e.must("", []string{"put", "cfg/b", "beta"}, "OK")
	e.must("", []string{"put", "other", "x"}, "OK")
	e.must("", []string{"get", "cfg/a"}, "cfg/a\nalpha")
	e.must("", []string{"get", "--prefix", "cfg/"}, "cfg/a\nalpha\ncfg/b\nbeta")
	e.must("", []string{"get", "--prefix", "cfg/", "--keys-only"}, "cfg/a", "cfg/b")
	e.must("", []string{"get", "cfg/a", "-w", "json"}, `"mod_revision":`, `"count":1`)
	// A single-key txn, compare on the value: the success branch runs.
	e.must("value(\"cfg/a\") = \"alpha\"\n\nput cfg/a gamma\n\nget cfg/a\n\n", []string{"txn"}, "SUCCESS", "OK")
	e.must("", []string{"get", "cfg/a"}, "gamma")
	// The same compare now fails: the failure branch runs.
	e.must("value(\"cfg/a\") = \"alpha\"\n\nput cfg/a delta\n\nget cfg/a\n\n", []string{"txn"}, "FAILURE", "gamma")
	e.must("", []string{"del", "cfg/b"}, "1")
	e.must("", []string{"del", "--prefix", "cfg/"}, "1")
	e.must("", []string{"endpoint", "health"}, "is healthy")
	e.must("", []string{"endpoint", "status", "-w", "table"}, "3.5.0-caspaxos")
	e.must("", []string{"member", "list"}, "n1", "n2", "n3")

	e.refused("value(\"other\") = \"x\"\n\nput cfg/z z\n\n\n", []string{"txn"}, "one key")
	e.refused("", []string{"get", "other", "--rev", "1"}, "revision", "no history")
}

func TestEtcdctl(t *testing.T) {
	bin := findEtcdctl(t)
	c := startCluster(t, 3, nil)
	waitReady(t, clientv3.Config{Logger: quiet, DialTimeout: 5 * time.Second}, c.etcd)
	e := etcdctl{t: t, bin: bin, endpoints: strings.Join(c.etcd, ",")}
	etcdctlChecks(t, e)
	t.Run("leases", func(t *testing.T) { etcdctlLeaseChecks(t, etcdctl{t: t, bin: e.bin, endpoints: e.endpoints}) })
	t.Run("watch", func(t *testing.T) { etcdctlWatchChecks(t, etcdctl{t: t, bin: e.bin, endpoints: e.endpoints}) })
	t.Run("locks", func(t *testing.T) { etcdctlLockChecks(t, etcdctl{t: t, bin: e.bin, endpoints: e.endpoints}) })
}
