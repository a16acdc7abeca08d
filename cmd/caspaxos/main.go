// Command caspaxos is the single binary of caspaxos: a node (`serve`), a
// local development cluster (`dev`) and a command-line client (`get`,
// `put`, `create`, `cas`, `del`, `incr`, `members`, `health`, `status`,
// `snapshot`).
//
// Only main decides the exit code: commands return errors, and exitCode maps
// them through one table (exitCodes), which the root command's help prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes one command line and returns its exit code. A failed command
// prints exactly one line to stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCmd(getenv)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var status *exitStatus
	if err != nil && !errors.As(err, &status) {
		fmt.Fprintln(stderr, "caspaxos: "+oneLine(err.Error()))
	}
	return exitCode(err)
}

const rootLong = `caspaxos is a replicated, strongly consistent key-value store built on
CASPaxos: every key is its own register, changed through a leaderless quorum
protocol. This one binary runs a node (serve), a local three-node cluster
(dev), and talks to a cluster as a client (get, put, create, cas, del, incr,
members, health).

Client commands print plain output by default (get prints the value's bytes
and nothing else) and one JSON object per command with -o json. Errors are one
line on stderr, and the exit code says what happened:

`

func newRootCmd(getenv func(string) string) *cobra.Command {
	opts := &clientOptions{}
	root := &cobra.Command{
		Use:   "caspaxos",
		Short: "A replicated, strongly consistent key-value store (CASPaxos)",
		Long:  rootLong + exitCodeHelp(),
		Example: `  go run ./cmd/caspaxos dev                # a 3-node cluster on 127.0.0.1:7070-7072
  caspaxos put greeting hello               # prints the new version
  caspaxos get greeting                     # prints hello
  caspaxos --endpoints 10.0.0.1:7070,10.0.0.2:7070 -o json get greeting
  caspaxos get missing || echo "exit code $?"   # exit code 3`,
		Args:          noArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SilenceErrors: true,
		SilenceUsage:  true,
		// For noArgs's "did you mean"; cobra's default applies only when
		// it checks the arguments itself.
		SuggestionsMinimumDistance: 2,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: true,
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	})
	opts.addFlags(root, getenv)
	root.AddCommand(
		newGetCmd(opts),
		newLsCmd(opts),
		newWatchCmd(opts),
		newPutCmd(opts),
		newCreateCmd(opts),
		newCASCmd(opts),
		newDelCmd(opts),
		newIncrCmd(opts),
		newLeaseCmd(opts),
		newLockCmd(opts),
		newElectCmd(opts),
		newMembersCmd(opts),
		newUserCmd(opts),
		newRoleCmd(opts),
		newAuthCmd(opts),
		newHealthCmd(opts),
		newSnapshotCmd(opts),
		newStatusCmd(opts),
		newBenchCmd(opts),
		newDevCmd(),
		newServeCmd(),
		newCertsCmd(),
	)
	return root
}

// noArgs refuses positional arguments on the root: they are unknown commands.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Errorf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		err = fmt.Errorf("unknown command %q; did you mean %q?", args[0], s[0])
	}
	return &usageError{cmd: cmd.CommandPath(), err: err}
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
}
