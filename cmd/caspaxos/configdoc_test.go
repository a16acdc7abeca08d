package main

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/caspaxos/caspaxos"
	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/consulapi"
	"github.com/caspaxos/caspaxos/server/daemon"
	"github.com/caspaxos/caspaxos/server/etcdapi"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/peerapi"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/server/status"
	"github.com/caspaxos/caspaxos/server/watch"
	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/transport"
)

// The table of timers and limits in docs/configuration.md is checked
// against the code: every row's default against the DefaultConfig() (or
// constant) it names and against its flag's default, and every default
// against the table, so that neither can change without the other.

const configDoc = "../../docs/configuration.md"

// configDefaults are the components' defaults, keyed by their type's name
// as the table writes it ("proposer.Config").
func configDefaults() map[string]any {
	out := map[string]any{}
	for _, v := range []any{
		kv.DefaultLimits,
		daemon.DefaultConfig(),
		daemon.DefaultTimers(),
		node.DefaultConfig(),
		node.DefaultSpaceConfig(),
		proposer.DefaultConfig(),
		acceptor.DefaultConfig(),
		transport.DefaultConfig(),
		gc.DefaultConfig(),
		gc.DefaultOptions(),
		membership.DefaultControllerConfig(),
		clientapi.DefaultAdmissionConfig(),
		clientapi.DefaultGRPCConfig(),
		clientapi.DefaultHTTPTimeouts(),
		list.DefaultConfig(),
		status.DefaultConfig(),
		watch.DefaultConfig(),
		etcdapi.DefaultConfig(),
		consulapi.DefaultConfig(),
		auth.DefaultConfig(),
		client.DefaultConfig(),
		caspaxos.DefaultOptions(),
	} {
		out[reflect.TypeOf(v).String()] = v
	}
	return out
}

// configConstants are the named limits that are no config field.
func configConstants() map[string]any {
	return map[string]any{
		"kv.DefaultRequestTimeout":            kv.DefaultRequestTimeout,
		"kv.ForwardMaxRTT":                    kv.ForwardMaxRTT,
		"kv.FailedRTT":                        kv.FailedRTT,
		"daemon.MaxValueBytesLimit":           daemon.MaxValueBytesLimit,
		"caspaxos.MaxNodes":                   caspaxos.MaxNodes,
		"proposer.MaxTimeout":                 proposer.MaxTimeout,
		"proposer.MaxGatherWindow":            proposer.MaxGatherWindow,
		"gc.MaxDuration":                      gc.MaxDuration,
		"protocol.MaxRequestRecords":          protocol.MaxRequestRecords,
		"clientapi.KeepaliveMinPingInterval":  clientapi.KeepaliveMinPingInterval,
		"watch.HeartbeatInterval":             watch.HeartbeatInterval,
		"kv.DefaultWatchWait":                 kv.DefaultWatchWait,
		"kv.MaxWatchWait":                     kv.MaxWatchWait,
		"consulapi.DefaultBlockingWait":       consulapi.DefaultBlockingWait,
		"consulapi.MinSessionTTL":             consulapi.MinSessionTTL,
		"consulapi.MaxSessionTTL":             consulapi.MaxSessionTTL,
		"kv.MaxWatchItems":                    kv.MaxWatchItems,
		"kv.DefaultListLimit":                 kv.DefaultListLimit,
		"kv.MaxListLimit":                     kv.MaxListLimit,
		"kv.MinLeaseTTL":                      kv.MinLeaseTTL,
		"kv.MaxLeaseTTL":                      kv.MaxLeaseTTL,
		"kv.DefaultLockDelay":                 kv.DefaultLockDelay,
		"kv.MaxLockDelay":                     kv.MaxLockDelay,
		"kv.MaxLockOwnerBytes":                kv.MaxLockOwnerBytes,
		"kv.DefaultLockWait":                  kv.DefaultLockWait,
		"kv.MaxLockWait":                      kv.MaxLockWait,
		"client.DefaultSessionTTL":            client.DefaultSessionTTL,
		"clientapi.MaxRestoreItems":           clientapi.MaxRestoreItems,
		"peerapi.MaxScanKeys":                 peerapi.MaxScanKeys,
		"storage.DefaultBallastBytes":         storage.DefaultBallastBytes,
		"protocol.DefaultAcceptorCeilingStep": protocol.DefaultAcceptorCeilingStep,
		"protocol.CacheEntryOverheadBytes":    protocol.CacheEntryOverheadBytes,
		"protocol.MaxRequestIDBytes":          protocol.MaxRequestIDBytes,
		"protocol.MaxRecordValueBytes":        protocol.MaxRecordValueBytes,
	}
}

// sameAs names, for a type whose fields repeat another's, the type whose
// row documents them: a field of the first with the same name as one of
// the second must have its value, and needs no row of its own.
var sameAs = map[string]string{
	"gc.Config":        "gc.Options",
	"caspaxos.Options": "proposer.Config",
}

// leaf is one default: a field's path ("proposer.Config.AttemptTimeout")
// and value.
type leaf struct {
	path string
	v    reflect.Value
}

// leaves flattens v (of type name) into its leaf fields. A field whose
// type has defaults of its own (another entry of roots) must be zero or
// equal to those, and is not flattened: its type's rows document it.
func leaves(t *testing.T, name string, v reflect.Value, roots map[string]any) []leaf {
	var out []leaf
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		path := name + "." + f.Name
		if fv.Kind() == reflect.Struct {
			if def, ok := roots[f.Type.String()]; ok {
				if !fv.IsZero() && !reflect.DeepEqual(fv.Interface(), def) {
					t.Errorf("%s is %+v, not %s's defaults %+v", path, fv.Interface(), f.Type, def)
				}
				continue
			}
			out = append(out, leaves(t, path, fv, roots)...)
			continue
		}
		switch fv.Kind() {
		case reflect.Bool, reflect.String, reflect.Int, reflect.Int64, reflect.Uint64:
			out = append(out, leaf{path, fv})
		}
	}
	return out
}

// docRow is one row of the table.
type docRow struct {
	name, def, unit, flag string
	line                  int
}

func readConfigDoc(t *testing.T) []docRow {
	t.Helper()
	f, err := os.Open(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []docRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("%s:%d: %d cells, want 5 (name, default, unit, flag, what it bounds)", configDoc, n, len(cells))
		}
		unquote := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		rows = append(rows, docRow{name: unquote(cells[0]), def: unquote(cells[1]), unit: strings.TrimSpace(cells[2]),
			flag: unquote(cells[3]), line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no table rows", configDoc)
	}
	return rows
}

// parseDefault reads a table default for a value of kind like: a duration
// ("500ms"), a switch ("false"), or an integer with an optional binary multiple ("32 MiB",
// "64 Ki" for a count).
func parseDefault(s string, like reflect.Value) (any, error) {
	switch {
	case like.Type() == reflect.TypeOf(time.Duration(0)):
		return time.ParseDuration(s)
	case like.Kind() == reflect.Bool:
		return strconv.ParseBool(s)
	}
	num, mult := s, int64(1)
	if a, b, ok := strings.Cut(s, " "); ok {
		num = a
		switch b {
		case "KiB", "Ki":
			mult = 1 << 10
		case "MiB", "Mi":
			mult = 1 << 20
		case "GiB", "Gi":
			mult = 1 << 30
		default:
			return nil, fmt.Errorf("unknown multiple %q", b)
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return nil, err
	}
	n *= mult
	switch like.Kind() {
	case reflect.Int:
		return int(n), nil
	case reflect.Int64:
		return n, nil
	case reflect.Uint64:
		return uint64(n), nil
	}
	return nil, fmt.Errorf("no table defaults for a %s", like.Type())
}

// valueAt is the field at a dotted path below v.
func valueAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		v = v.FieldByName(name)
		if !v.IsValid() {
			return reflect.Value{}, false
		}
	}
	return v, true
}

func TestConfigDocMatchesDefaults(t *testing.T) {
	roots := configDefaults()
	consts := configConstants()
	values := map[string]reflect.Value{}
	required := map[string]bool{}
	for name, def := range roots {
		for _, l := range leaves(t, name, reflect.ValueOf(def), roots) {
			if src, ok := sameAs[name]; ok {
				field := strings.TrimPrefix(l.path, name+".")
				if sv, ok := valueAt(reflect.ValueOf(roots[src]), field); ok {
					if sv.Interface() != l.v.Interface() {
						t.Errorf("%s is %v, but %s.%s is %v", l.path, l.v, src, field, sv)
					}
					continue
				}
			}
			values[l.path] = l.v
			if l.v.Kind() != reflect.Bool && l.v.Kind() != reflect.String && !l.v.IsZero() {
				required[l.path] = true
			}
		}
	}
	for name, c := range consts {
		values[name] = reflect.ValueOf(c)
		required[name] = true
	}

	serve, root := &serveOptions{}, newRootCmd(func(string) string { return "" })
	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	serve.addFlags(flags)
	flagged := map[string]bool{}
	seen := map[string]bool{}
	for _, r := range readConfigDoc(t) {
		at := fmt.Sprintf("%s:%d: %s", configDoc, r.line, r.name)
		v, ok := values[r.name]
		if !ok {
			t.Errorf("%s: no such default (a field of a DefaultConfig, or a named constant of configConstants)", at)
			continue
		}
		if seen[r.name] {
			t.Errorf("%s: listed twice", at)
		}
		seen[r.name] = true
		want, err := parseDefault(r.def, v)
		if err != nil {
			t.Errorf("%s: default %q: %v", at, r.def, err)
			continue
		}
		if want != v.Interface() {
			t.Errorf("%s: the table says %q, the code %v", at, r.def, v)
		}
		isDuration := v.Type() == reflect.TypeOf(time.Duration(0))
		if isDuration != (r.unit == "duration") || strings.Contains(r.name, "Bytes") != (r.unit == "bytes") || r.unit == "" {
			t.Errorf("%s: unit %q does not fit a %s", at, r.unit, v.Type())
		}
		if r.flag != "" && r.flag != "—" {
			checkFlag(t, at, r, want, flags, root.PersistentFlags())
			flagged[strings.TrimPrefix(strings.Fields(r.flag)[0], "--")] = true
		}
	}
	for name := range required {
		if !seen[name] {
			t.Errorf("%s has a default but no row in %s", name, configDoc)
		}
	}
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Value.Type() != "bool" && f.Value.Type() != "string" && !flagged[f.Name] {
			t.Errorf("serve --%s bounds something but has no row in %s", f.Name, configDoc)
		}
	})
}

// checkFlag checks a row's flag: its default is the row's, and, for a flag
// of serve, it sets the daemon.Config field whose default that is.
func checkFlag(t *testing.T, at string, r docRow, want any, serve, root *pflag.FlagSet) {
	t.Helper()
	name := strings.TrimPrefix(strings.Fields(r.flag)[0], "--")
	f := serve.Lookup(name)
	if f == nil {
		if f = root.Lookup(name); f == nil {
			t.Errorf("%s: no flag --%s", at, name)
			return
		}
	}
	if got, err := parseDefault(f.DefValue, reflect.ValueOf(want)); err != nil || got != want {
		t.Errorf("%s: --%s defaults to %s, the table to %s", at, name, f.DefValue, r.def)
	}
	if serve.Lookup(name) == nil {
		return
	}
	field, ok := serveFlagFields()[name]
	if !ok {
		t.Errorf("%s: --%s sets no daemon.Config field (serveFlagFields)", at, name)
		return
	}
	v, ok := valueAt(reflect.ValueOf(daemon.DefaultConfig()), string(field))
	if !ok || v.Interface() != want {
		t.Errorf("%s: --%s sets daemon.Config.%s, whose default is %v, not the row's %s", at, name, field, v, r.def)
	}
}

// Every flag of serve that serveFlagFields maps to a daemon.Config field
// sets that field.
func TestServeFlagsSetTheirFields(t *testing.T) {
	for name, field := range serveFlagFields() {
		o := &serveOptions{}
		flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		o.addFlags(flags)
		f := flags.Lookup(name)
		if f == nil {
			t.Errorf("serveFlagFields names --%s, which serve lacks", name)
			continue
		}
		// A value no default has, and how the field shows it.
		bv := strconv.FormatBool(f.DefValue != "true")
		vw := map[string][2]string{
			"duration": {"1234ms", "1.234s"},
			"int":      {"1234", "1234"},
			"int64":    {"1234", "1234"},
			"string":   {"h:1234", "h:1234"},
			"bool":     {bv, bv},
		}[f.Value.Type()]
		value, want := vw[0], vw[1]
		switch name {
		case "cluster":
			value, want = "n1=h:1234", "[{n1 h:1234}]"
		case "http-allowed-hosts":
			value, want = "a.example, B.example,", "[a.example B.example]"
		case "gc": // --gc is GC.Disabled's opposite
			want = strconv.FormatBool(value != "true")
		}
		if err := flags.Set(name, value); err != nil {
			t.Fatalf("--%s %s: %v", name, value, err)
		}
		// The configuration is incomplete (no name, no data directory):
		// only the field matters here, not Validate's verdict.
		cfg, _ := o.daemonConfig(nil)
		v, ok := valueAt(reflect.ValueOf(cfg), string(field))
		if !ok {
			t.Errorf("--%s: daemon.Config has no field %s", name, field)
			continue
		}
		if got := fmt.Sprint(v.Interface()); got != want {
			t.Errorf("--%s %s left daemon.Config.%s at %s, want %s", name, value, field, got, want)
		}
	}
}

// A configuration error names the flags, not the daemon's fields.
func TestServeErrorsNameFlags(t *testing.T) {
	o := &serveOptions{}
	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.addFlags(flags)
	if err := flags.Parse([]string{"--cluster", "n1=127.0.0.1:7080", "--max-value-bytes", "999999999", "--etcd-addr", "2379"}); err != nil {
		t.Fatal(err)
	}
	_, err := o.daemonConfig(nil)
	for _, want := range []string{"--name is required", "--data-dir is required", "--max-value-bytes 999999999 is above 16 MiB", `--etcd-addr "2379" is not HOST:PORT`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// The defaults' relations across packages (those within one package are
// checked by its Config's validation).
func TestDefaultRelations(t *testing.T) {
	d := daemon.DefaultConfig()
	cl := client.DefaultConfig()
	for _, r := range []struct {
		ok   bool
		what string
	}{
		{daemon.MaxValueBytesLimit+d.Limits.MaxKeyBytes < d.Transport.MaxRecvFrameBytes,
			"a value at daemon.MaxValueBytesLimit fits one peer frame (transport.Config.MaxRecvFrameBytes)"},
		{cl.KeepaliveTime >= clientapi.KeepaliveMinPingInterval,
			"the Go client pings no more often than the node allows (client.Config.KeepaliveTime, clientapi.KeepaliveMinPingInterval)"},
		{d.RequestTimeout >= 2*d.Node.Proposer.AttemptTimeout,
			"a request has time for a retried attempt (RequestTimeout, proposer.Config.AttemptTimeout)"},
		{d.HTTP.WriteTimeout > d.RequestTimeout,
			"an HTTP answer may take a whole request's time (clientapi.HTTPTimeouts.WriteTimeout, RequestTimeout)"},
		{d.Transport.MaxForwardTimeout >= d.RequestTimeout,
			"a forwarded request keeps its deadline (transport.Config.MaxForwardTimeout, RequestTimeout)"},
		{d.Timers.LeaveTimeout < d.Timers.StopTimeout,
			"the leave is a part of the stop's budget (daemon.Timers.LeaveTimeout, StopTimeout)"},
		{kv.ForwardMaxRTT < kv.FailedRTT,
			"a failed peer is never near enough to forward to (kv.ForwardMaxRTT, kv.FailedRTT)"},
	} {
		if !r.ok {
			t.Errorf("broken: %s", r.what)
		}
	}
}
