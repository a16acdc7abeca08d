package check

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The manifests of deploy/kubernetes, parsed, checked against the binary
// they run: every flag they pass is one of `caspaxos serve --help` and
// parses; every address flag's port is a container port; every probe asks
// a named port for /v1/health, which a real node answers; every path a
// flag names lies in a mounted volume, and the TLS files are those
// `caspaxos certs create` makes for each pod; the ConfigMap holds a
// serve config file for every pod whose cluster matches the pods' peer
// addresses; the Services, the PodDisruptionBudget and the anti-affinity
// select the pods.

const manifests = ".."

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caspaxos-kube")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "caspaxos")
	build := exec.Command("go", "build", "-o", binary, "./cmd/caspaxos")
	build.Dir = filepath.Join("..", "..", "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caspaxos:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type obj = map[string]any

// load parses every YAML document of every manifest, by kind and name.
func load(t *testing.T) map[string]obj {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifests, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifests, err)
	}
	out := map[string]obj{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o obj
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			kind, name := str(t, o, "kind"), str(t, o, "metadata", "name")
			if str(t, o, "apiVersion") == "" || kind == "" || name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or name", f)
			}
			if _, dup := out[kind+"/"+name]; dup {
				t.Fatalf("%s: %s/%s twice", f, kind, name)
			}
			out[kind+"/"+name] = o
		}
	}
	return out
}

// get walks o by keys (string keys of maps, int indexes of lists).
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := o.(obj)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			l, ok := o.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}

func str(t *testing.T, o any, path ...any) string {
	t.Helper()
	v := get(o, path...)
	if v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%v: %v is not a string", path, v)
	}
	return s
}

func num(t *testing.T, o any, path ...any) int {
	t.Helper()
	n, ok := get(o, path...).(int)
	if !ok {
		t.Fatalf("%v: %v is not a number", path, get(o, path...))
	}
	return n
}

func list(o any, path ...any) []any { l, _ := get(o, path...).([]any); return l }

func must(t *testing.T, objs map[string]obj, kindName string) obj {
	t.Helper()
	o, ok := objs[kindName]
	if !ok {
		t.Fatalf("no %s in the manifests", kindName)
	}
	return o
}

// serveFlags lists the long flags of `caspaxos serve --help`.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(binary, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v: %s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["data-dir"] || !flags["peer-addr"] {
		t.Fatalf("serve --help lists no --data-dir or --peer-addr: %s", out)
	}
	return flags
}

// expand replaces $(VAR) as Kubernetes does in args, from env; an unknown
// variable fails the test (Kubernetes would leave it as is).
func expand(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\$\(([A-Z_][A-Z0-9_]*)\)`).ReplaceAllStringFunc(s, func(m string) string {
		v, ok := env[m[2:len(m)-1]]
		if !ok {
			t.Fatalf("%s refers to %s, which the container's env does not define", s, m)
		}
		return v
	})
}

func TestManifests(t *testing.T) {
	objs := load(t)
	sts := must(t, objs, "StatefulSet/caspaxos")
	spec := get(sts, "spec")
	pod := get(spec, "template", "spec")
	labels := get(spec, "template", "metadata", "labels").(obj)
	selects := func(what string, sel any) {
		t.Helper()
		m, ok := sel.(obj)
		if !ok || len(m) == 0 {
			t.Fatalf("%s selects nothing", what)
		}
		for k, v := range m {
			if labels[k] != v {
				t.Fatalf("%s selects %s=%v, which the pods do not carry (%v)", what, k, v, labels)
			}
		}
	}
	selects("the StatefulSet", get(spec, "selector", "matchLabels"))
	if str(t, spec, "podManagementPolicy") != "Parallel" {
		t.Fatal("podManagementPolicy must be Parallel: a new cluster's members serve only once all have started")
	}
	for _, k := range []string{"whenDeleted", "whenScaled"} {
		if str(t, spec, "persistentVolumeClaimRetentionPolicy", k) != "Retain" {
			t.Fatalf("persistentVolumeClaimRetentionPolicy.%s must be Retain: a member's volume is its identity", k)
		}
	}
	replicas := num(t, spec, "replicas")
	if replicas < 3 || replicas%2 == 0 {
		t.Fatalf("replicas %d: want an odd number, at least 3", replicas)
	}

	containers := list(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	c := containers[0]
	ports := map[string]int{}
	for _, p := range list(c, "ports") {
		ports[str(t, p, "name")] = num(t, p, "containerPort")
	}
	flags := serveFlags(t)
	certs := certsFor(t, replicas)
	mounts := map[string]string{} // mount path -> volume name
	for _, m := range list(c, "volumeMounts") {
		mounts[str(t, m, "mountPath")] = str(t, m, "name")
	}
	volumes := map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(t, v, "name")] = v
	}
	for _, v := range list(spec, "volumeClaimTemplates") {
		volumes[str(t, v, "metadata", "name")] = v
	}
	for path, name := range mounts {
		if volumes[name] == nil {
			t.Fatalf("mount %s names volume %q, which neither volumes nor volumeClaimTemplates define", path, name)
		}
	}
	cm := must(t, objs, "ConfigMap/"+str(t, volumeOf(t, volumes, mounts, "/etc/caspaxos/members/x"), "configMap", "name"))
	secret := str(t, volumeOf(t, volumes, mounts, "/etc/caspaxos/tls/x"), "secret", "secretName")
	if secret == "" {
		t.Fatal("the TLS files come from no Secret")
	}

	headless := must(t, objs, "Service/"+str(t, spec, "serviceName"))
	if str(t, headless, "spec", "clusterIP") != "None" || get(headless, "spec", "publishNotReadyAddresses") != true {
		t.Fatal("the StatefulSet's Service must be headless and publish pods that are not ready (members find each other before they are ready)")
	}
	var peerAddrs []string
	for i := range replicas {
		podName := fmt.Sprintf("%s-%d", str(t, sts, "metadata", "name"), i)
		env := map[string]string{}
		for _, e := range list(c, "env") {
			name := str(t, e, "name")
			switch {
			case str(t, e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name":
				env[name] = podName
			case get(e, "value") != nil:
				env[name] = str(t, e, "value")
			}
		}
		args := map[string]string{}
		var argv []string
		for _, a := range list(c, "args") {
			s := expand(t, a.(string), env)
			name, value, ok := strings.Cut(strings.TrimPrefix(s, "--"), "=")
			if !strings.HasPrefix(s, "--") || !ok || !flags[name] {
				t.Fatalf("arg %q: not --FLAG=VALUE of a flag of caspaxos serve", s)
			}
			args[name] = value
			argv = append(argv, s)
		}
		// The binary's own parser takes them.
		if out, err := exec.Command(binary, append(append([]string{"serve"}, argv...), "--help")...).CombinedOutput(); err != nil {
			t.Fatalf("caspaxos serve %v: %v: %s", argv, err, out)
		}
		for flag, port := range map[string]string{"client-addr": "client", "peer-addr": "peer"} {
			_, p, err := net.SplitHostPort(args[flag])
			if err != nil || p != strconv.Itoa(ports[port]) || ports[port] == 0 {
				t.Fatalf("--%s %q: its port is not the container port %q (%d)", flag, args[flag], port, ports[port])
			}
		}
		peerAddrs = append(peerAddrs, podName+"="+args["peer-addr"])
		if host, _, _ := net.SplitHostPort(args["peer-addr"]); host != podName+"."+str(t, headless, "metadata", "name") {
			t.Fatalf("--peer-addr %s is not the pod's name under the headless Service", args["peer-addr"])
		}
		if mounts[args["data-dir"]] == "" || get(volumes[mounts[args["data-dir"]]], "spec", "accessModes") == nil {
			t.Fatalf("--data-dir %s is not a mounted volume claim", args["data-dir"])
		}
		for _, flag := range []string{"cert-file", "key-file", "trusted-ca-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file"} {
			p := args[flag]
			if p == "" {
				t.Fatalf("--%s is not set: the manifests run TLS on both ports", flag)
			}
			if volumeOf(t, volumes, mounts, p) == nil || filepath.Dir(p) != "/etc/caspaxos/tls" {
				t.Fatalf("--%s %s: not in the Secret's mount", flag, p)
			}
			if !certs[filepath.Base(p)] {
				t.Fatalf("--%s %s: caspaxos certs create makes no such file (%v)", flag, p, certs)
			}
		}
		if args["client-cert-auth"] == "true" {
			t.Fatal("--client-cert-auth: kubelet's HTTPS probes present no client certificate")
		}
		conf := args["config"]
		if filepath.Dir(conf) != "/etc/caspaxos/members" {
			t.Fatalf("--config %s: not in the ConfigMap's mount", conf)
		}
		file := str(t, cm, "data", filepath.Base(conf))
		if file == "" {
			t.Fatalf("ConfigMap %s has no %s for pod %s", str(t, cm, "metadata", "name"), filepath.Base(conf), podName)
		}
		settings := confSettings(t, file)
		for k := range settings {
			if !flags[k] || k == "config" {
				t.Fatalf("%s: setting %q is no flag of caspaxos serve", filepath.Base(conf), k)
			}
			if _, both := args[k]; both {
				t.Fatalf("%s: %q is also an arg, which wins", filepath.Base(conf), k)
			}
		}
		if i == replicas-1 {
			want := strings.Join(peerAddrs, ",")
			for j := range replicas {
				if got := confSettings(t, str(t, cm, "data", fmt.Sprintf("%s-%d.conf", str(t, sts, "metadata", "name"), j)))["cluster"]; got != want {
					t.Fatalf("pod %d's cluster %q, want the pods' peer addresses %q", j, got, want)
				}
			}
		}
		checkProbes(t, c, ports, args["cert-file"] != "")
	}

	// Services: the clients' one and the headless one select the pods and
	// aim at named container ports.
	for key, o := range objs {
		if !strings.HasPrefix(key, "Service/") {
			continue
		}
		selects(key, get(o, "spec", "selector"))
		for _, p := range list(o, "spec", "ports") {
			tp := str(t, p, "targetPort")
			if ports[tp] == 0 || num(t, p, "port") != ports[tp] {
				t.Fatalf("%s port %v: target %q is not a container port of that number", key, p, tp)
			}
		}
	}
	client := must(t, objs, "Service/caspaxos")
	if get(client, "spec", "publishNotReadyAddresses") == true || str(t, client, "spec", "clusterIP") == "None" {
		t.Fatal("the clients' Service must send to ready pods only")
	}
	pdb := must(t, objs, "PodDisruptionBudget/caspaxos")
	selects("the PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"))
	if mu := num(t, pdb, "spec", "maxUnavailable"); mu < 1 || mu > (replicas-1)/2 {
		t.Fatalf("maxUnavailable %d with %d members: a drain could take the quorum", mu, replicas)
	}
	anti := list(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
	if len(anti) != 1 || str(t, anti[0], "topologyKey") != "kubernetes.io/hostname" {
		t.Fatal("no required anti-affinity by kubernetes.io/hostname")
	}
	selects("the anti-affinity", get(anti[0], "labelSelector", "matchLabels"))
	for _, r := range []string{"cpu", "memory"} {
		if get(c, "resources", "requests", r) == nil {
			t.Fatalf("no %s request", r)
		}
	}
}

// volumeOf returns the volume mounted at the longest mount path that
// holds path, nil if none.
func volumeOf(t *testing.T, volumes map[string]any, mounts map[string]string, path string) any {
	t.Helper()
	best := ""
	for m := range mounts {
		if strings.HasPrefix(path, m+"/") && len(m) > len(best) {
			best = m
		}
	}
	if best == "" {
		return nil
	}
	return volumes[mounts[best]]
}

// confSettings parses a serve config file as the binary does: flag = value.
func confSettings(t *testing.T, file string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(file, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("config line %q is not flag = value", line)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// certsFor lists the files `caspaxos certs create` makes for the pods.
func certsFor(t *testing.T, replicas int) map[string]bool {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	var names []string
	for i := range replicas {
		names = append(names, fmt.Sprintf("caspaxos-%d", i))
	}
	if out, err := exec.Command(binary, "certs", "create", "--dir", dir, "--nodes", strings.Join(names, ",")).CombinedOutput(); err != nil {
		t.Fatalf("certs create: %v: %s", err, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}

// checkProbes: readiness, liveness and startup each GET /v1/health on a
// named container port, over HTTPS when the client port is TLS.
func checkProbes(t *testing.T, c any, ports map[string]int, tls bool) {
	t.Helper()
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		h := get(c, probe, "httpGet")
		if h == nil {
			t.Fatalf("no %s.httpGet", probe)
		}
		if str(t, h, "path") != healthPath || ports[str(t, h, "port")] == 0 {
			t.Fatalf("%s: %v: want %s on a named container port", probe, h, healthPath)
		}
		if (str(t, h, "scheme") == "HTTPS") != tls {
			t.Fatalf("%s: scheme %q, client TLS %v", probe, str(t, h, "scheme"), tls)
		}
	}
}

const healthPath = "/v1/health"

// The probes' path is a real node's health: a one-member cluster answers
// it 200 once it serves.
func TestHealthPathAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, peer := l.Addr().String(), l2.Addr().String()
	l.Close()
	l2.Close()
	cmd := exec.Command(binary, "serve", "--name", "caspaxos-0", "--data-dir", t.TempDir(), "--client-addr", client,
		"--peer-addr", peer, "--cluster", "caspaxos-0="+peer)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + client + healthPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200: %v", healthPath, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
