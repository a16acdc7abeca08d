package main

import (
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestLeaseCommands: grant, renew once, read and revoke a lease; a revoked
// lease is not found (exit 3); bad arguments are usage errors.
func TestLeaseCommands(t *testing.T) {
	env := map[string]string{envEndpoints: serveAddr(t, clientapitest.New())}
	r := runCLI(t, env, "", "lease", "grant", "10s")
	id, rest, _ := strings.Cut(r.stdout, " ")
	if r.code != 0 || id == "" || rest != "ttl=10s live\n" {
		t.Fatalf("grant: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	runSteps(t, env, []step{
		{args: []string{"put", "--lease", id, "worker", "up"}, stdout: "1\n"},
		{args: []string{"put", "--lease", id, "--if-version", "1", "worker", "up"}, stdout: "2\n"},
		{args: []string{"put", "--lease", "xyz", "worker", "up"}, code: exitUsage, errLine: `lease ID "xyz" is not`},
		{args: []string{"lease", "keepalive", "--once", id}, stdout: id + " ttl=10s live\n"},
		{args: []string{"lease", "ttl", id}, stdout: id + " ttl=10s live\n"},
		{args: []string{"lease", "revoke", id}},
		{args: []string{"lease", "ttl", id}, code: exitNotFound, errLine: "lease ttl: lease not found, expired or revoked"},
		{args: []string{"lease", "keepalive", "--once", id}, code: exitNotFound, errLine: "lease keepalive: lease not found, expired or revoked"},
		{args: []string{"lease", "grant", "ten"}, code: exitUsage, errLine: `TTL "ten" is not a duration`},
		{args: []string{"lease", "ttl", "xyz"}, code: exitUsage, errLine: `lease ID "xyz" is not`},
	})
}
