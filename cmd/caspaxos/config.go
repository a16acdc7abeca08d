package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// applySources fills every flag of cmd's own (not those inherited from the
// root, which belong to the client commands) that the command line did not set,
// first from the environment (CASPAXOS_<FLAG>, dashes as underscores, e.g.
// CASPAXOS_DATA_DIR), then from the config file named by --config. So the
// command line wins over the environment, which wins over the file.
//
// The config file holds one `flag = value` per line, with the flags' long
// names; blank lines and lines starting with # are ignored, and a value may
// be quoted:
//
//	# n1.conf
//	name = n1
//	data-dir = "/var/lib/caspaxos"
//	cluster = n1=10.0.0.1:7080,n2=10.0.0.2:7080,n3=10.0.0.3:7080
func applySources(cmd *cobra.Command, lookupEnv func(string) (string, bool), configFile string) error {
	file := map[string]string{}
	if configFile != "" {
		var err error
		if file, err = readConfigFile(configFile); err != nil {
			return err
		}
		for name := range file {
			if f := cmd.LocalFlags().Lookup(name); f == nil || name == "config" {
				return fmt.Errorf("%s: unknown setting %q (settings are the long flag names of '%s')", configFile, name, cmd.CommandPath())
			}
		}
	}
	var firstErr error
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || f.Name == "help" {
			return
		}
		env := "CASPAXOS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				firstErr = fmt.Errorf("%s=%q: %v", env, v, err)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := f.Value.Set(v); err != nil {
				firstErr = fmt.Errorf("%s: %s = %q: %v", configFile, f.Name, v, err)
			}
		}
	})
	return firstErr
}

func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want `flag = value`, got %q", path, n, line)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s:%d: %q is set twice", path, n, name)
		}
		out[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}
