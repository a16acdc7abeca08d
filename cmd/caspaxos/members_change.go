package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

// membersChangeTimeout bounds a membership change the CLI waits for (unless
// --timeout is longer); the change goes on in the cluster if it is not done
// by then.
const membersChangeTimeout = 10 * time.Minute

func newMembersAddCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME=PEER_ADDR",
		Short: "Add a node to the cluster (start it with `serve --join` first)",
		Long: `Add the node serving PEER_ADDR under NAME, through the steps of PROTOCOL.md §8
(its acceptor gets the GC fences, joins the accept set, every key is caught up,
then it joins the prepare set). The endpoint that answers runs the change (gRPC
Cluster.MemberAdd, as the Go client's MemberAdd) and this command waits until it
is done, for at least 10 minutes; 'caspaxos members' shows its progress. If the
wait ends first, it exits 6 (outcome unknown): the change goes on.`,
		Example: `  caspaxos serve --join --name n4 --data-dir /data/n4 --client-addr :7073 --peer-addr 10.0.0.4:7080 &
  caspaxos members add n4=10.0.0.4:7080`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, addr, _ := strings.Cut(args[0], "=")
			if name == "" || addr == "" {
				return usagef(cmd.CommandPath(), "want NAME=PEER_ADDR, got %q", args[0])
			}
			return o.changeMembers(cmd, "members add", func(ctx context.Context, c *client.Client) (client.Membership, error) {
				return c.MemberAdd(ctx, name, addr)
			})
		},
	}
}

func newMembersRemoveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the cluster",
		Long: `Remove the member NAME through the steps of PROTOCOL.md §8. The node may be
down for good (a lost disk: remove it, then add it back with 'serve --join' on an
empty data directory; it gets a new node ID). Waits as 'members add' does.`,
		Example: `  caspaxos members remove n2`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.changeMembers(cmd, "members remove", func(ctx context.Context, c *client.Client) (client.Membership, error) {
				return c.MemberRemove(ctx, args[0])
			})
		},
	}
}

// changeMembers runs a membership change through the client and prints
// the membership it answers with.
func (o *clientOptions) changeMembers(cmd *cobra.Command, op string, fn func(context.Context, *client.Client) (client.Membership, error)) error {
	return o.callWithin(cmd, max(o.timeout, membersChangeTimeout), func(ctx context.Context, c *client.Client, p printer) error {
		m, err := fn(ctx, c)
		if err != nil {
			return &memberChangeError{opError{op: op, err: err}}
		}
		return printMembership(p, m)
	})
}

// memberChangeError says what an unknown outcome means for a change.
type memberChangeError struct{ opError }

func (e *memberChangeError) Error() string {
	if errors.Is(e.err, client.ErrUnknownOutcome) {
		return e.op + ": not done in time; the change may go on: see 'caspaxos members'"
	}
	return e.opError.Error()
}

func (e *memberChangeError) Unwrap() error { return e.err }

func printMembership(p printer, m client.Membership) error {
	if m.Members == nil {
		m.Members = []client.Member{}
	}
	return p.print(m, func(w io.Writer) error {
		if err := writeMembers(w, m.Members); err != nil {
			return err
		}
		if ch := m.Change; ch != nil {
			_, err := fmt.Fprintf(w, "change in progress: %s %s, step %d of %d (configuration %d), catch-up %d of %d keys%s\n",
				ch.Op, ch.Target, min(ch.Step+1, ch.Steps), ch.Steps, ch.Version, ch.CatchUpDone, ch.CatchUpTotal, changeError(ch.Error))
			return err
		}
		return nil
	})
}

func changeError(msg string) string {
	if msg == "" {
		return ""
	}
	return "; retrying after: " + msg
}
