package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
)

const (
	envEndpoints     = "CASPAXOS_ENDPOINTS"
	defaultEndpoints = defaultClientAddr
	// maxStdinBytes bounds a value read from stdin (servers refuse far
	// smaller values by default; this only stops unbounded reads).
	maxStdinBytes = 64 << 20
)

// clientOptions holds the root's persistent flags, shared by the client
// commands.
type clientOptions struct {
	endpoints string
	timeout   time.Duration
	output    string
	user      string // NAME[:PASSWORD]
	// plaintextCredentials lets --user go over plain TCP to a remote node.
	plaintextCredentials bool
	// TLS to the nodes' client ports: the CA that signs their
	// certificates, and the client's own certificate and key.
	cacert, cert, key string
}

func (o *clientOptions) addFlags(root *cobra.Command, getenv func(string) string) {
	endpoints := defaultEndpoints
	if env := strings.TrimSpace(getenv(envEndpoints)); env != "" {
		endpoints = env
	}
	fs := root.PersistentFlags()
	fs.StringVar(&o.endpoints, "endpoints", endpoints,
		"comma-separated client addresses (host:port) of nodes; default from $"+envEndpoints+" if set")
	fs.DurationVar(&o.timeout, "timeout", kv.DefaultRequestTimeout, "deadline for the whole command")
	fs.StringVarP(&o.output, "output", "o", "plain", "output format: plain or json")
	fs.StringVar(&o.user, "user", "", "log in as NAME[:PASSWORD] (a cluster with auth enabled); without a password, it is asked for on the terminal")
	fs.BoolVar(&o.plaintextCredentials, "allow-plaintext-credentials", false,
		"send --user's password and tokens over plain TCP to nodes that are not on this host (only on a trusted network; else use --cacert)")
	fs.StringVar(&o.cacert, "cacert", "", "PEM CA certificates to verify the nodes' TLS certificates with (TLS on)")
	fs.StringVar(&o.cert, "cert", "", "PEM client certificate to present (TLS on; for nodes with --client-cert-auth)")
	fs.StringVar(&o.key, "key", "", "PEM private key of --cert")
}

// credentials parses --user; a missing password is read from the terminal
// without echo, and is an error when stdin is no terminal.
func (o *clientOptions) credentials(cmd *cobra.Command) (string, string, error) {
	if o.user == "" {
		return "", "", nil
	}
	return namePassword(cmd, "--user", o.user)
}

// namePassword parses what (--user, or an argument) as NAME[:PASSWORD],
// asking for a missing password on the terminal.
func namePassword(cmd *cobra.Command, what, s string) (string, string, error) {
	name, password, ok := strings.Cut(s, ":")
	if name == "" {
		return "", "", usagef(cmd.CommandPath(), "%s needs a NAME", what)
	}
	if ok {
		return name, password, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", "", usagef(cmd.CommandPath(), "%s %s has no password and stdin is not a terminal to ask for it: write %s:PASSWORD", what, name, name)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Password for %s: ", name)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return "", "", fmt.Errorf("reading the password: %w", err)
	}
	return name, string(b), nil
}

// endpointList parses --endpoints.
func (o *clientOptions) endpointList(cmdPath string) ([]string, error) {
	var out []string
	for _, ep := range strings.Split(o.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	if len(out) == 0 {
		return nil, usagef(cmdPath, "--endpoints is empty")
	}
	return out, nil
}

// printer writes a command's result in the chosen format.
type printer struct {
	out, errOut io.Writer
	json        bool
}

// call checks the options, then runs fn with a client and a context bounded
// by --timeout.
func (o *clientOptions) call(cmd *cobra.Command, fn func(context.Context, *client.Client, printer) error) error {
	return o.callWithin(cmd, o.timeout, fn)
}

// callWithin is call with a deadline of timeout instead of --timeout.
func (o *clientOptions) callWithin(cmd *cobra.Command, timeout time.Duration, fn func(context.Context, *client.Client, printer) error) error {
	p := printer{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
	switch o.output {
	case "plain":
	case "json":
		p.json = true
	default:
		return usagef(cmd.CommandPath(), "--output %q: want plain or json", o.output)
	}
	if o.timeout <= 0 {
		return usagef(cmd.CommandPath(), "--timeout must be positive, got %s", o.timeout)
	}
	endpoints, err := o.endpointList(cmd.CommandPath())
	if err != nil {
		return err
	}
	// The wait for one endpoint's connection before the client tries the
	// next stays at the client's default, whatever --timeout says, unless
	// --timeout is shorter.
	user, password, err := o.credentials(cmd)
	if err != nil {
		return err
	}
	// The client logs in once and keeps its token for the process.
	c, err := client.New(client.Config{Endpoints: endpoints, DialTimeout: min(o.timeout, client.DefaultConfig().DialTimeout),
		Username: user, Password: password, AllowPlaintextCredentials: o.plaintextCredentials,
		CAFile: o.cacert, CertFile: o.cert, KeyFile: o.key})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return fn(ctx, c, p)
}

// exactArgs is cobra.ExactArgs whose error is a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return usageArgs(cobra.ExactArgs(n))
}

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{cmd: cmd.CommandPath(), err: err}
		}
		return nil
	}
}

// keyArg checks a KEY argument.
func keyArg(cmd *cobra.Command, key string) (string, error) {
	if key == "" {
		return "", usagef(cmd.CommandPath(), "KEY must not be empty")
	}
	return key, nil
}

// valueArg returns a VALUE argument, or all of stdin when it is "-".
func valueArg(cmd *cobra.Command, arg string) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxStdinBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the value from stdin: %w", err)
	}
	if len(b) > maxStdinBytes {
		return nil, errors.New("reading the value from stdin: more than 64 MiB")
	}
	return b, nil
}

// versionArg parses a VERSION argument.
func versionArg(cmd *cobra.Command, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usagef(cmd.CommandPath(), "VERSION %q is not a version (a non-negative integer)", s)
	}
	return v, nil
}
