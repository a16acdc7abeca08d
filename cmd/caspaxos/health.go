package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newHealthCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Check that a node reaches a quorum",
		Long: `Ask the first reachable endpoint whether it reaches a quorum of acceptors.

Healthy: prints "healthy" and exits 0. Unhealthy: prints the node's reason
on the error line and exits 5. No endpoint reachable: exits 7. With -o json
the answer is {"healthy":true} or {"healthy":false,"message":"..."} on
stdout in both cases. To check one particular node, give only its address
with --endpoints.`,
		Example: `  caspaxos health
  caspaxos --endpoints 127.0.0.1:7072 health
  until caspaxos health >/dev/null 2>&1; do sleep 1; done`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				healthy, msg, err := c.Health(ctx)
				if err != nil {
					return &opError{op: "health", err: err}
				}
				if healthy || p.json {
					err := p.print(healthJSON{Healthy: healthy, Message: msg}, func(w io.Writer) error {
						_, err := fmt.Fprintln(w, "healthy")
						return err
					})
					if err != nil {
						return err
					}
				}
				if !healthy {
					return &opError{op: "health", err: fmt.Errorf("%w: %s", errUnhealthy, msg)}
				}
				return nil
			})
		},
	}
}
