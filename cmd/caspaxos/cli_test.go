package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// result is what one command line did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs a command line as main does, with env as the environment.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut, getenv)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// Lines that cannot run exit with 2 and one line on stderr, before any
// connection is tried (the endpoint is unreachable on purpose).
func TestUsageErrors(t *testing.T) {
	dead := []string{"--endpoints", "127.0.0.1:1", "--timeout", "300ms"}
	tests := []struct {
		args []string
		want string // in the error line
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"gte", "k"}, `did you mean "get"?`},
		{[]string{"get"}, "accepts 1 arg(s), received 0"},
		{[]string{"get", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"get", ""}, "KEY must not be empty"},
		{[]string{"put", "k"}, "accepts 2 arg(s), received 1"},
		{[]string{"put", "--if-version", "x", "k", "v"}, `invalid argument "x" for "--if-version"`},
		{[]string{"put", "k", "-5"}, "unknown shorthand flag: '5'"},
		{[]string{"cas", "k", "v1", "x"}, `VERSION "v1" is not a version`},
		{[]string{"cas", "k", "-1", "x"}, "unknown shorthand flag"},
		{[]string{"del", "--if-version", "0", "k"}, "--if-version must be at least 1"},
		{[]string{"incr", "k", "1.5"}, `DELTA "1.5" is not an integer`},
		{[]string{"incr", "k", "1", "2"}, "accepts between 1 and 2 arg(s)"},
		{[]string{"members", "extra"}, "accepts 0 arg(s)"},
		{[]string{"-o", "yaml", "get", "k"}, `--output "yaml": want plain or json`},
		{[]string{"--timeout", "0s", "get", "k"}, "--timeout must be positive"},
		{[]string{"--timeout", "soon", "get", "k"}, `invalid argument "soon"`},
		{[]string{"--endpoints", " , ", "get", "k"}, "--endpoints is empty"},
		{[]string{"get", "--nope", "k"}, "unknown flag: --nope"},
		{[]string{"dev", "--nodes", "10"}, "--nodes 10: want 1 to 9"},
		{[]string{"dev", "--base-client-port", "7080"}, "overlap"},
		{[]string{"dev", "--base-peer-port", "65534"}, "are not all valid"},
		{[]string{"certs", "create", "--nodes", "n1"}, "--dir is required"},
		{[]string{"bench", "--mode", "rest"}, `--mode "rest": want grpc, http or h2c`},
		{[]string{"certs", "create", "--dir", "d", "--nodes", " , "}, "--nodes names no node"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append(slices.Clone(dead), tt.args...)
			if tt.args[0] == "dev" {
				args = tt.args
			}
			r := runCLI(t, nil, "", args...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "caspaxos: ") || strings.Count(r.stderr, "\n") != 1 ||
				!strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "--help')") {
				t.Fatalf("stderr %q, want one line with %q and a help hint", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestHelpListsCommandsExamplesAndExitCodes(t *testing.T) {
	r := runCLI(t, nil, "", "--help")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"Exit codes:", "  7  no endpoint reachable", "get", "put", "create", "cas", "del", "incr", "members", "health", "dev", "serve"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("root help lacks %q", want)
		}
	}
	if r := runCLI(t, nil, ""); r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") {
		t.Errorf("no arguments: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, cmd := range newRootCmd(func(string) string { return "" }).Commands() {
		if cmd.Name() == "help" {
			continue
		}
		if cmd.Example == "" {
			t.Errorf("%s has no examples in its help", cmd.Name())
		}
	}
}

func TestEndpointsFlagEnvAndDefault(t *testing.T) {
	tests := []struct {
		name string
		env  string
		args []string
		want []string
	}{
		{"default", "", nil, []string{"127.0.0.1:7070"}},
		{"env", "10.0.0.1:7070, 10.0.0.2:7070", nil, []string{"10.0.0.1:7070", "10.0.0.2:7070"}},
		{"flag wins over env", "10.0.0.1:7070", []string{"--endpoints", "a:1,,b:2,"}, []string{"a:1", "b:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd(func(k string) string {
				if k == envEndpoints {
					return tt.env
				}
				return ""
			})
			if err := root.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			v, err := root.PersistentFlags().GetString("endpoints")
			if err != nil {
				t.Fatal(err)
			}
			o := &clientOptions{endpoints: v}
			got, err := o.endpointList("caspaxos")
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("endpoints %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestDevLayoutAndServeArgs(t *testing.T) {
	o := devOptions{dataDir: "./caspaxos-data", nodes: 3, baseClientPort: 7070, basePeerPort: 7080}
	nodes := o.layout()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes", len(nodes))
	}
	want := []string{"serve", "--name", "n2", "--data-dir", "caspaxos-data/n2",
		"--client-addr", "127.0.0.1:7071", "--peer-addr", "127.0.0.1:7081",
		"--cluster", "n1=127.0.0.1:7080,n2=127.0.0.1:7081,n3=127.0.0.1:7082"}
	if got := serveArgs(nodes[1], nodes); !slices.Equal(got, want) {
		t.Fatalf("serve args\n%q\nwant\n%q", got, want)
	}
}

// dev refuses to start when one of its ports is taken, before it starts
// any node.
func TestDevFailsClearlyWhenAPortIsTaken(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	port := lis.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	peer := strconv.Itoa(port - 10)
	if port < 20 {
		peer = strconv.Itoa(port + 10)
	}
	code := run(ctx, []string{"dev", "--data-dir", t.TempDir(), "--base-client-port", strconv.Itoa(port), "--base-peer-port", peer},
		strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if code != exitError || !strings.Contains(errOut.String(), lis.Addr().String()+" for n1 is not free") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if strings.Count(errOut.String(), "\n") != 1 || out.Len() != 0 {
		t.Fatalf("want exactly one error line and no output; stdout %q stderr %q", out.String(), errOut.String())
	}
}
