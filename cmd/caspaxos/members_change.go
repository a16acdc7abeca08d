package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// membersChangeTimeout bounds a membership change the CLI waits for; the
// change goes on in the cluster if it is not done by then.
const membersChangeTimeout = 10 * time.Minute

func newMembersAddCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME=PEER_ADDR",
		Short: "Add a node to the cluster (start it with `serve --join` first)",
		Long: `Add the node serving PEER_ADDR under NAME, through the steps of PROTOCOL.md §8
(its acceptor gets the GC fences, joins the accept set, every key is caught up,
then it joins the prepare set). The first endpoint runs the change and this
command waits until it is done; 'caspaxos members' shows its progress.`,
		Example: `  caspaxos serve --join --name n4 --data-dir /data/n4 --client-addr :7073 --peer-addr 10.0.0.4:7080 &
  caspaxos members add n4=10.0.0.4:7080`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.membersHTTP(cmd, http.MethodPost, "/v1/members", args[0])
		},
	}
}

func newMembersRemoveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the cluster",
		Long: `Remove the member NAME through the steps of PROTOCOL.md §8. The node may be
down for good (a lost disk: remove it, then add it back with 'serve --join' on an
empty data directory; it gets a new node ID).`,
		Example: `  caspaxos members remove n2`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.membersHTTP(cmd, http.MethodDelete, "/v1/members/"+args[0], "")
		},
	}
}

// membersHTTP sends a membership change to the first endpoint and prints
// the membership it answers with.
func (o *clientOptions) membersHTTP(cmd *cobra.Command, method, path, body string) error {
	endpoint := strings.TrimSpace(strings.Split(o.endpoints, ",")[0])
	ctx, cancel := context.WithTimeout(cmd.Context(), max(o.timeout, membersChangeTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+endpoint+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("members: %s", strings.TrimSpace(string(b)))
	}
	_, err = cmd.OutOrStdout().Write(b)
	return err
}
